//! The model alone, per backend, on one core: one PP-OCR det run on a
//! 960×960 tile (what tiled and guided passes run) and on 1920×1088 (what
//! RapidOCR feeds it for a 1080p frame), through tract and through ONNX
//! Runtime (`engines/fetch-onnxruntime.sh`). Model megapixels per second
//! per core = input pixels / median; × 11.24 GFLOP per model megapixel
//! gives each backend's share of the core's FP32 peak (BENCHMARKS.md).
//! `cargo bench --bench engines`.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use edgewatch::infer::onnxruntime::{self, OrtModel};
use edgewatch::infer::TractModel;
use edgewatch::infer::{Engine, EngineFactory, TensorBatch};

const SHAPES: [(usize, usize); 2] = [(960, 960), (1088, 1920)];

/// A frame-like input: a smooth gradient with stripes, in PP-OCR's range.
fn input(h: usize, w: usize) -> TensorBatch {
    let data = (0..3 * h * w)
        .map(|i| {
            let (y, x) = ((i / w) % h, i % w);
            if (y / 24) % 3 == 0 && (x / 7) % 2 == 0 {
                -0.8
            } else {
                0.7 - (x + y) as f32 / (w + h) as f32 * 0.2
            }
        })
        .collect();
    TensorBatch {
        shape: [1, 3, h, w],
        data,
    }
}

fn engines(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("engines/ppocr-det-v4.onnx");
    let tract = TractModel::load(&model).expect("engines/fetch-models.sh fetches the model");
    let library = root.join("engines/onnxruntime/libonnxruntime.so");
    let runtime = onnxruntime::open(&library)
        .unwrap_or_else(|e| panic!("{e} (engines/fetch-onnxruntime.sh fetches it)"));
    let ort = OrtModel::load(runtime, &model, tract.input_spec().clone(), 1).unwrap();
    let mut engines: Vec<(&str, Box<dyn Engine>)> = vec![
        ("tract", Box::new(tract.engine().unwrap())),
        ("onnxruntime", ort.engine().unwrap()),
    ];
    for (h, w) in SHAPES {
        let batch = input(h, w);
        for (name, engine) in engines.iter_mut() {
            // The first run optimises tract's plan for the shape.
            engine.run(batch.clone()).unwrap();
            c.bench_function(&format!("engine/{name}/1-thread/{w}x{h}"), |b| {
                b.iter(|| engine.run(black_box(batch.clone())).unwrap())
            });
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(20));
    targets = engines
}
criterion_main!(benches);
