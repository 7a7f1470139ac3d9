//! A realistic detections message: a 1080p frame with 8 text boxes (~1.6 KB
//! of JSON). Shared by the criterion benches and `examples/outbox_throughput.rs`.

use std::time::{Duration, UNIX_EPOCH};

use edgewatch::base::FrameMeta;
use edgewatch::infer::ModelInfo;
use edgewatch::infer::{FrameResult, Timing};
use edgewatch::postprocess::Detection;
use edgewatch::sink::Message;

/// Message number `seq` of source `bench` on device `bench`.
pub fn sample_message(seq: u64) -> Message {
    let detections = (0..8)
        .map(|i| {
            let y = 40.0 + i as f32 * 120.0;
            Detection::from_quad(
                "text",
                0,
                0.87,
                [[100.0, y], [420.0, y], [420.0, y + 40.0], [100.0, y + 40.0]],
            )
        })
        .collect();
    let result = FrameResult {
        width: 1920,
        height: 1080,
        scaled_to: None,
        detections,
        timing: Timing {
            decode: 20.0,
            infer: 250.0,
            post: 3.0,
            read: 0.0,
            total: 273.0,
        },
        work: Default::default(),
    };
    let model = ModelInfo {
        name: "ppocr-det-v4".into(),
        sha256: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9".into(),
        backend: "tract-cpu",
    };
    let meta = FrameMeta {
        source: "bench".into(),
        seq,
        id: format!("bench-{seq}"),
        captured_at: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        path: None,
    };
    Message::new("bench", &meta, &model, &result)
}
