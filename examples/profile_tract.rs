//! Where tract spends its time on the reference model: every node of the
//! optimised plan timed over a few runs, summed by operator, largest first.
//! `cargo run --release --example profile_tract [W H [RUNS]]` (default
//! 960 960 5, one thread: what one worker runs). Its output for a tile is in
//! BENCHMARKS.md and docs/memory-and-tiling.md.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use edgewatch::infer::TractModel;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::eval;

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (w, h, runs) = match args.as_slice() {
        [] => (960, 960, 5),
        [w, h] => (*w, *h, 5),
        [w, h, r, ..] => (*w, *h, *r),
        _ => anyhow::bail!("usage: profile_tract [W H [RUNS]]"),
    };
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
    let tract = TractModel::load(&model)?;
    let plan = tract.plan([1, 3, h, w])?;
    let mut state = plan.spawn()?;
    let input = || -> TVec<TValue> {
        tvec!(Tensor::from(tract_ndarray::Array4::<f32>::from_elem((1, 3, h, w), 0.25)).into())
    };
    state.run(input())?;
    let mut by_op: HashMap<String, (Duration, usize)> = HashMap::new();
    let started = Instant::now();
    for _ in 0..runs {
        state.run_plan_with_eval(input(), |ctx, st, node, inputs| {
            let t = Instant::now();
            let out = eval(ctx, st, node, inputs);
            let e = by_op.entry(node.op().name().to_string()).or_default();
            e.0 += t.elapsed();
            e.1 += 1;
            out
        })?;
    }
    let total = started.elapsed();
    let mut rows: Vec<_> = by_op.into_iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
    println!(
        "tract on {w}x{h}, {runs} runs, {:.1} ms a run",
        total.as_secs_f64() * 1e3 / runs as f64
    );
    println!("| operator | ms a run | share | nodes |");
    println!("| --- | ---: | ---: | ---: |");
    for (op, (t, n)) in rows {
        println!(
            "| {op} | {:.1} | {:.1}% | {} |",
            t.as_secs_f64() * 1e3 / runs as f64,
            100.0 * t.as_secs_f64() / total.as_secs_f64(),
            n / runs
        );
    }
    Ok(())
}
