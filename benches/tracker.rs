//! What tracking costs per frame: the scene (mask, tracker, event policy)
//! over 20 moving objects, without snapshots.
//! `cargo bench --bench tracker`

use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use edgewatch::events::SceneTracker;
use edgewatch::events::{default_publish, EventsConfig, SceneConfig, ZoneConfig};
use edgewatch::postprocess::Detection;

fn frame_dets(i: u64, n: usize) -> Vec<Detection> {
    (0..n)
        .map(|k| {
            let x = (k as f32 * 90.0 + i as f32 * 3.0) % 1800.0;
            let y = 40.0 + k as f32 * 50.0;
            Detection {
                label: "text".into(),
                class_id: 0,
                score: 0.9,
                bbox: [x, y, x + 80.0, y + 24.0],
                quad: None,
                read: None,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let cfg = SceneConfig {
        publish: default_publish(),
        zones: vec![ZoneConfig {
            name: "right".into(),
            points: vec![
                [960.0, 0.0],
                [1920.0, 0.0],
                [1920.0, 1080.0],
                [960.0, 1080.0],
            ],
        }],
        mask: vec![vec![[0.0, 1000.0], [1920.0, 1000.0], [1920.0, 1080.0]]],
        events: EventsConfig::default(),
        snapshots: None,
    };
    let frame = image::RgbImage::new(1920, 1080);
    let mut scene = SceneTracker::new("dev", "cam", cfg, 1, Duration::from_secs(60));
    let t0 = SystemTime::now();
    let mut i = 0u64;
    c.bench_function("scene_observe_20_objects", |b| {
        b.iter(|| {
            i += 1;
            let mut dets = frame_dets(i, 20);
            scene.apply_mask(&mut dets);
            scene.observe(i, t0 + Duration::from_millis(200 * i), &dets, &frame)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
