//! Messages/s through the durable outbox to a broker at QoS 1: every message
//! appended and fsynced, delivered, acknowledged, removed.
//! Usage: cargo run --release --example outbox_throughput -- mqtt://127.0.0.1:1883 [COUNT]

#[path = "../tests/it/common/message.rs"]
mod message;

use std::time::{Duration, Instant};

use edgewatch::sink::{MqttConfig, MqttSink};
use message::sample_message;

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
    let started = Instant::now();
    for seq in 0..count as u64 {
        sink.publish(&sample_message(seq), || true).expect("append");
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
