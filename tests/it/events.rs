//! Camera-like streams publish events, not a message per frame: a replay of
//! a label that appears, stays, moves into a zone and leaves, through the
//! real daemon and mosquitto, gives one `new`, the `update`s the policy
//! asks for and one `end`, all with one `track_id`; a masked label gives
//! nothing; with `motion = true` the still frames are skipped and the
//! label is still found.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::textimg;
use common::{Broker, Daemon, Subscriber};
use edgewatch::source::pixels::PixelFormat;
use edgewatch::source::replay::{ReplayHeader, ReplayWriter};

const FPS: f64 = 5.0;

/// 20 s at 5 fps: empty 0–2 s, the label still 2–12 s, moving right
/// 10 px a frame 12–14 s, gone after; a second label sits in the masked
/// strip at the bottom all along. Light noise on every frame, as a sensor
/// has.
fn write_replay(path: &Path) {
    let font = textimg::font();
    let mut w = ReplayWriter::create(
        path,
        ReplayHeader {
            format: PixelFormat::Rgb3,
            width: 320,
            height: 240,
            fps: Some(FPS),
        },
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..100u32 {
        let t = i as f64 / FPS;
        let mut img = image::RgbImage::from_fn(320, 240, |_, _| {
            let v = 225 + rng.u8(0..5);
            image::Rgb([v, v, v])
        });
        textimg::draw_text(
            &mut img,
            &font,
            22.0,
            20.0,
            215.0,
            "Dock 9-1200",
            [20, 20, 20],
        );
        let x = if !(2.0..14.0).contains(&t) {
            None
        } else if t < 12.0 {
            Some(20.0)
        } else {
            Some(20.0 + 10.0 * (i - 59) as f32)
        };
        if let Some(x) = x {
            textimg::draw_text(&mut img, &font, 24.0, x, 90.0, "Bay 17-4431", [10, 10, 10]);
        }
        w.push_at(Duration::from_millis(200 * i as u64), img.as_raw())
            .unwrap();
    }
    w.finish().unwrap();
}

fn source(name: &str, extra: &str) -> String {
    format!(
        r#"[[source]]
name = "{name}"
kind = "replay"
path = "scene.ewraw"
{extra}
mask = [[[0, 190], [320, 190], [320, 240], [0, 240]]]
[[source.zones]]
name = "right"
points = [[160, 0], [320, 0], [320, 240], [160, 240]]
[source.events]
update_interval_s = 4
end_after_s = 2
[source.snapshots]
to = "mqtt"
max_side = 64
"#
    )
}

fn events_of(all: &[common::Received], src: &str) -> Vec<serde_json::Value> {
    let topic = format!("edgewatch/bench/{src}/events");
    all.iter()
        .filter(|m| m.topic == topic)
        .map(|m| m.json())
        .collect()
}

#[test]
fn a_label_that_comes_stays_moves_and_leaves_is_one_new_its_updates_and_one_end() {
    let dir = tempfile::tempdir().unwrap();
    write_replay(&dir.path().join("scene.ewraw"));
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let port = common::free_port();
    let sources = format!(
        "{}{}",
        source("plain", ""),
        source("gated", "motion = true\nmotion_refresh_s = 3")
    );
    let cfg = common::write_config(
        dir.path(),
        &broker,
        &sources,
        &format!("[tiling]\nmode = \"off\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let mut daemon = Daemon::start(&cfg);
    let all = sub.wait_until(Duration::from_secs(90), "an end from both sources", |all| {
        ["plain", "gated"]
            .iter()
            .all(|s| events_of(all, s).iter().any(|e| e["type"] == "end"))
    });
    let (_, metrics) = common::http_get(port, "/metrics");
    daemon.stop_cleanly();
    for src in ["plain", "gated"] {
        let ev = events_of(&all, src);
        let kinds: Vec<&str> = ev.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "new").count(),
            1,
            "{src}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "end").count(),
            1,
            "{src}: {kinds:?}"
        );
        assert_eq!(kinds[0], "new", "{src}");
        assert_eq!(*kinds.last().unwrap(), "end", "{src}");
        let id = &ev[0]["track_id"];
        assert!(
            ev.iter().all(|e| &e["track_id"] == id),
            "{src}: one track id"
        );
        // The masked label (centre y ≈ 207) never made an event.
        assert!(
            ev.iter().all(|e| e["box"][1].as_f64().unwrap() < 150.0),
            "{src}"
        );
        // Every update has its reason: a move by more than min_move (0.25
        // of the box), a zone change, or 4 s since the last event.
        for pair in ev.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            if b["type"] != "update" {
                continue;
            }
            let bx = |e: &serde_json::Value, i: usize| e["box"][i].as_f64().unwrap();
            let size = (bx(a, 2) - bx(a, 0)).max(bx(a, 3) - bx(a, 1));
            let shift = ((bx(b, 0) + bx(b, 2)) - (bx(a, 0) + bx(a, 2))).abs() / 2.0;
            let t = |e: &serde_json::Value| {
                humantime::parse_rfc3339(e["last_seen"].as_str().unwrap()).unwrap()
            };
            let waited = t(b).duration_since(t(a)).unwrap_or_default();
            assert!(
                shift > 0.25 * size * 0.99
                    || a["zones"] != b["zones"]
                    || waited >= Duration::from_secs(4),
                "{src}: an update without a reason: {a} then {b}"
            );
        }
        let timed = ev
            .iter()
            .filter(|e| e["type"] == "update" && e["box"][0].as_f64().unwrap() < 30.0)
            .count();
        assert!(timed >= 1, "{src}: a timed update while still: {kinds:?}");
        let end = ev.last().unwrap();
        assert_eq!(
            end["zones"],
            serde_json::json!(["right"]),
            "{src}: it left from the zone"
        );
        assert_eq!(
            ev[0]["zones"],
            serde_json::json!([]),
            "{src}: it appeared outside it"
        );
        // The snapshot of the new object: a JPEG no larger than 64 px.
        let snap_leaf = ev[0]["snapshot"].as_str().unwrap().to_string();
        let snap = all
            .iter()
            .find(|m| m.topic == format!("edgewatch/bench/{src}/{snap_leaf}"))
            .unwrap_or_else(|| panic!("{src}: no snapshot on {snap_leaf}"));
        let img = image::load_from_memory(&snap.payload).unwrap();
        assert!(img.width().max(img.height()) <= 64 && img.width() > img.height());
        // The retained objects state ends at 0.
        let states: Vec<u64> = all
            .iter()
            .filter(|m| m.topic == format!("edgewatch/bench/{src}/objects"))
            .map(|m| m.json()["count"].as_u64().unwrap())
            .collect();
        assert_eq!(states.last(), Some(&0), "{src}: {states:?}");
        assert!(states.contains(&1), "{src}: {states:?}");
    }
    // No frame messages: events are the default for streams.
    assert!(!all.iter().any(|m| m.topic.ends_with("/detections")));
    let still = common::metric(
        &metrics,
        "edgewatch_camera_frames_total{source=\"gated\",outcome=\"still\"}",
    )
    .unwrap_or(0.0);
    let plain = common::metric(
        &metrics,
        "edgewatch_camera_frames_total{source=\"plain\",outcome=\"inferred\"}",
    )
    .unwrap();
    let gated = common::metric(
        &metrics,
        "edgewatch_camera_frames_total{source=\"gated\",outcome=\"inferred\"}",
    )
    .unwrap();
    eprintln!("FIGURES inferred plain {plain} gated {gated} still {still}");
    assert!(still >= 20.0, "still frames skipped: {still}");
    assert!(
        gated < plain,
        "gating infers fewer frames: {gated} vs {plain}"
    );
}
