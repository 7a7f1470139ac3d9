//! `edgewatch` with a faulty engine, for the tests of what a panic or a
//! hang in inference costs (tests/it/bad_input.rs, detect_cli.rs,
//! systemd_notify.rs). The real model loads and runs as shipped; the
//! engine around it panics on a frame that is mostly magenta and hangs on
//! one that is mostly cyan. Any other frame runs normally, so warm-up,
//! health pings and the good files around the bad ones are real.

use std::process::ExitCode;
use std::sync::Arc;

use edgewatch::infer::{Engine, EngineFactory, InferError, InputSpec, Outputs, TensorBatch};
use edgewatch::runtime::Seams;

#[global_allocator]
static ALLOC: edgewatch::runtime::HugePageAlloc = edgewatch::runtime::HugePageAlloc;

/// The colour a batch mostly is, from the channels' differences, so it
/// holds for every family's normalisation and for RGB or BGR order:
/// magenta has green low and red equal to blue; cyan has green high, one
/// outer channel equal to it and the other low. "Mostly": over a fifth of
/// the pixels, so a frame padded or scaled into a larger tensor still
/// counts.
#[derive(Debug, PartialEq)]
enum Colour {
    Magenta,
    Cyan,
    Other,
}

fn colour(batch: &TensorBatch) -> Colour {
    let [_, c, h, w] = batch.shape;
    if c != 3 || h * w == 0 {
        return Colour::Other;
    }
    let plane = h * w;
    let (a, g, b) = (
        &batch.data[..plane],
        &batch.data[plane..2 * plane],
        &batch.data[2 * plane..3 * plane],
    );
    let near = |x: f32, y: f32| (x - y).abs() < 0.1;
    let (mut magenta, mut cyan) = (0usize, 0usize);
    for i in 0..plane {
        let (a, g, b) = (a[i], g[i], b[i]);
        if near(a, b) && a - g > 0.5 {
            magenta += 1;
        } else if (near(g, a) && g - b > 0.5) || (near(g, b) && g - a > 0.5) {
            cyan += 1;
        }
    }
    if magenta * 5 > plane {
        Colour::Magenta
    } else if cyan * 5 > plane {
        Colour::Cyan
    } else {
        Colour::Other
    }
}

struct Faulty(Box<dyn Engine>);

impl Engine for Faulty {
    fn input_spec(&self) -> &InputSpec {
        self.0.input_spec()
    }

    fn run(&mut self, batch: TensorBatch) -> Result<Outputs, InferError> {
        match colour(&batch) {
            Colour::Magenta => panic!("faulty engine: a magenta frame"),
            Colour::Cyan => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            Colour::Other => self.0.run(batch),
        }
    }
}

struct FaultyFactory(Arc<dyn EngineFactory>);

impl EngineFactory for FaultyFactory {
    fn engine(&self) -> Result<Box<dyn Engine>, InferError> {
        Ok(Box::new(Faulty(self.0.engine()?)))
    }

    fn label(&self) -> &'static str {
        self.0.label()
    }
}

fn wrap(real: Arc<dyn EngineFactory>) -> Arc<dyn EngineFactory> {
    Arc::new(FaultyFactory(real))
}

fn main() -> ExitCode {
    edgewatch::cli::main(Seams {
        wrap_engine: Some(wrap),
    })
}
