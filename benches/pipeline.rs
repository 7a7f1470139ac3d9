//! Regression guards for the stages around the engine: decode + resize +
//! normalise (1080p, 4K), DB decode on a real probability map, tile plan +
//! stitch, outbox append (fsync included), payload encode, and camera frame
//! conversion (YUYV, MJPEG with and without Huffman tables) at 1080p.
//! `cargo bench --bench pipeline`; the model-free parts need no download, the
//! DB decode needs engines/fetch-models.sh.

use edgewatch_samples as textimg;

#[path = "../tests/it/common/message.rs"]
mod message;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use edgewatch::infer::LoadedModel;
use edgewatch::infer::{decode_file, whole_frame_size, Preprocessor};
use edgewatch::infer::{Engine, ModelConfig};
use edgewatch::infer::{TilePlan, TilingConfig};
use edgewatch::postprocess::db::{self, ProbMap};
use edgewatch::postprocess::DecodeConfig;
use edgewatch::sink::Outbox;
use message::sample_message;

/// A seeded JPEG with text, written once per run.
fn sample(dir: &std::path::Path, w: u32, h: u32) -> std::path::PathBuf {
    let (img, _) = textimg::render(w, h, 7, 12, 18, 40);
    let p = dir.join(format!("{w}x{h}.jpg"));
    img.save(&p).expect("write the sample");
    p
}

fn preprocess(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    for (name, w, h) in [("1080p", 1920, 1080), ("4k", 3840, 2160)] {
        let path = sample(dir.path(), w, h);
        let mut pre = Preprocessor::new();
        c.bench_function(&format!("decode+resize+normalise/{name}/whole-960"), |b| {
            b.iter(|| {
                let d = decode_file(&path, 40_000_000).unwrap();
                let (tw, th) = whole_frame_size(d.image.width(), d.image.height(), 960);
                black_box(pre.to_tensor(&d.image, tw, th));
            })
        });
        let decoded = decode_file(&path, 40_000_000).unwrap();
        let plan = TilePlan::new(w, h, &TilingConfig::default());
        c.bench_function(
            &format!("tiles-to-tensor/{name}/{}-tiles", plan.tiles.len()),
            |b| {
                b.iter(|| {
                    for i in 0..plan.tiles.len() {
                        black_box(pre.tiles_to_tensor(&decoded.image, &plan, &[i]));
                    }
                })
            },
        );
    }
}

fn tile_plan_and_stitch(c: &mut Criterion) {
    let cfg = TilingConfig::default();
    c.bench_function("tile-plan/4k", |b| {
        b.iter(|| black_box(TilePlan::new(black_box(3840), black_box(2160), &cfg)))
    });
    let plan = TilePlan::new(3840, 2160, &cfg);
    let (th, tw) = plan.shapes()[0];
    let map: Vec<f32> = (0..th * tw).map(|i| (i % 97) as f32 / 97.0).collect();
    let mut stitched = vec![0u8; plan.scaled_w as usize * plan.scaled_h as usize];
    c.bench_function("stitch/4k", |b| {
        b.iter(|| {
            for i in 0..plan.tiles.len() {
                plan.stitch_owned(i, &map, &mut stitched);
            }
            black_box(&stitched);
        })
    });
}

fn db_decode(c: &mut Criterion) {
    let model_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
    if !model_path.exists() {
        eprintln!("skipping db-decode: run engines/fetch-models.sh first");
        return;
    }
    // A real map: the model run once on a rendered 1080p frame at 960×544.
    let (img, _) = textimg::render(1920, 1080, 11, 12, 18, 40);
    let cfg = ModelConfig::new(model_path);
    let model = LoadedModel::load(&cfg, [1, 3, 544, 960]).expect("load the model");
    let mut engine = model.tract.engine().unwrap();
    let tensor = Preprocessor::new().to_tensor(&img, 960, 544);
    let out = engine.run(tensor).expect("run the model");
    let decode = DecodeConfig::default();
    c.bench_function("db-decode/960x544-real-map", |b| {
        b.iter(|| {
            black_box(db::decode(
                &decode,
                ProbMap::f32(&out.data, 960, 544),
                1920,
                1080,
                "text",
            ))
        })
    });
    let quantised: Vec<u8> = out.data.iter().map(|p| (p * 255.0).round() as u8).collect();
    c.bench_function("db-decode/960x544-real-map-u8", |b| {
        b.iter(|| {
            black_box(db::decode(
                &decode,
                ProbMap::u8(&quantised, 960, 544),
                1920,
                1080,
                "text",
            ))
        })
    });
}

fn sink(c: &mut Criterion) {
    c.bench_function("payload-encode/8-boxes", |b| {
        b.iter(|| black_box(sample_message(black_box(42)).to_json()))
    });
    let dir = tempfile::tempdir().unwrap();
    let (outbox, _) = Outbox::open(dir.path(), 64 << 20).expect("open the outbox");
    let payload = sample_message(1).to_json();
    let mut seq = 0u64;
    c.bench_function("outbox-append+fsync+ack/1.6KB", |b| {
        b.iter(|| {
            seq += 1;
            let key = outbox
                .append("edgewatch/bench/in/detections", payload.as_bytes(), || true)
                .unwrap();
            outbox.ack(key).unwrap();
        })
    });
}

/// A camera frame into a pooled RGB buffer: what each inferred frame costs
/// before the model sees it.
fn camera_convert(c: &mut Criterion) {
    use edgewatch::source::encode_frame;
    use edgewatch::source::{Converter, PixelFormat};
    let (img, _) = textimg::render(1920, 1080, 7, 12, 18, 40);
    let mut out = image::RgbImage::new(1920, 1080);
    let mut conv = Converter::new();
    for format in [PixelFormat::Yuyv, PixelFormat::Mjpeg] {
        let raw = encode_frame(&img, format);
        c.bench_function(&format!("camera-convert/{format}/1080p"), |b| {
            b.iter(|| {
                conv.convert(format, 1920, 1080, black_box(&raw), &mut out)
                    .unwrap()
            })
        });
    }
    // UVC cameras leave the standard Huffman tables out.
    let bare = edgewatch::source::without_huffman_tables(&encode_frame(&img, PixelFormat::Mjpeg));
    c.bench_function("camera-convert/mjpeg-no-dht/1080p", |b| {
        b.iter(|| {
            conv.convert(PixelFormat::Mjpeg, 1920, 1080, black_box(&bare), &mut out)
                .unwrap()
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = preprocess, tile_plan_and_stitch, db_decode, sink, camera_convert
}
criterion_main!(benches);
