//! Messages/s through the durable outbox to a broker at QoS 1: every message
//! appended and fsynced, delivered, acknowledged, removed.
//! Usage: cargo run --release --example outbox_throughput -- mqtt://127.0.0.1:1883 [COUNT]

use std::time::{Duration, Instant, UNIX_EPOCH};

use edgewatch::decode::Detection;
use edgewatch::frame::FrameMeta;
use edgewatch::infer::detector::{FrameResult, Timing};
use edgewatch::infer::model::ModelInfo;
use edgewatch::sink::mqtt::{MqttConfig, MqttSink};
use edgewatch::sink::payload::Message;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "mqtt://127.0.0.1:1883".into());
    let count: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let dir = std::env::temp_dir().join(format!("edgewatch-outbox-bench-{}", std::process::id()));
    let cfg = MqttConfig {
        url,
        outbox: dir.clone(),
        ..MqttConfig::default()
    };
    let sink = MqttSink::start(&cfg, "bench", None).expect("start the publisher");
    let stats = sink.stats();
    while !stats.connected.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // A realistic message: a 1080p frame with 8 text boxes (~1.6 KB of JSON).
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
        detections,
        timing: Timing {
            decode: 20.0,
            infer: 250.0,
            post: 3.0,
            total: 273.0,
        },
    };
    let model = ModelInfo {
        name: "ppocr-det-v4".into(),
        sha256: "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9".into(),
        backend: "tract-cpu",
    };
    let started = Instant::now();
    for seq in 0..count as u64 {
        let meta = FrameMeta {
            source: "bench".into(),
            seq,
            id: format!("bench-{seq}"),
            captured_at: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            path: None,
        };
        sink.publish(&Message::new("bench", &meta, &model, &result), || true)
            .expect("append");
    }
    let appended = started.elapsed();
    while stats.acked.load(std::sync::atomic::Ordering::Relaxed) < count as u64 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let total = started.elapsed();
    sink.shutdown(Duration::from_secs(2));
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{count} messages: appended+synced in {:.2} s, all acknowledged after {:.2} s: {:.0} messages/s",
        appended.as_secs_f64(),
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64()
    );
}
