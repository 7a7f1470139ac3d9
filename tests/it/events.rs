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
use edgewatch::source::PixelFormat;
use edgewatch::source::{ReplayHeader, ReplayWriter};

const FPS: f64 = 5.0;

/// Writes `n` frames of `w`×`h` at 5 fps, light noise on each (as a
/// sensor has), `draw` putting the scene on frame `i`.
fn write_frames(
    path: &Path,
    (w, h): (u32, u32),
    n: u32,
    mut draw: impl FnMut(u32, &mut image::RgbImage),
) {
    let mut out = ReplayWriter::create(
        path,
        ReplayHeader {
            format: PixelFormat::Rgb3,
            width: w,
            height: h,
            fps: Some(FPS),
        },
    )
    .unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..n {
        let mut img = image::RgbImage::from_fn(w, h, |_, _| {
            let v = 225 + rng.u8(0..5);
            image::Rgb([v, v, v])
        });
        draw(i, &mut img);
        out.push_at(Duration::from_millis(200 * i as u64), img.as_raw())
            .unwrap();
    }
    out.finish().unwrap();
}

/// 20 s at 5 fps: empty 0–2 s, the label still 2–12 s, moving right
/// 10 px a frame 12–14 s, gone after; a second label sits in the masked
/// strip at the bottom all along.
fn write_replay(path: &Path) {
    let font = textimg::font();
    write_frames(path, (320, 240), 100, |i, img| {
        let t = i as f64 / FPS;
        textimg::draw_text(img, &font, 22.0, 20.0, 215.0, "Dock 9-1200", [20, 20, 20]);
        let x = if !(2.0..14.0).contains(&t) {
            None
        } else if t < 12.0 {
            Some(20.0)
        } else {
            Some(20.0 + 10.0 * (i - 59) as f32)
        };
        if let Some(x) = x {
            textimg::draw_text(img, &font, 24.0, x, 90.0, "Bay 17-4431", [10, 10, 10]);
        }
    });
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

/// The box centre of an event.
fn centre(e: &serde_json::Value) -> (f64, f64) {
    let b = |i: usize| e["box"][i].as_f64().unwrap();
    ((b(0) + b(2)) / 2.0, (b(1) + b(3)) / 2.0)
}

#[test]
fn two_labels_that_cross_keep_their_track_ids() {
    // Two labels on rows 26 px apart cross in opposite directions, 8 px a
    // frame each: their detected boxes (grown by the detector's unclip)
    // overlap while they pass, so a tracker matching by IoU alone could
    // swap them; the predicted boxes keep each on its own path.
    const ROW_A: f32 = 84.0;
    const ROW_B: f32 = 110.0;
    let dir = tempfile::tempdir().unwrap();
    let font = textimg::font();
    // 8 s of crossing, then 2 s empty: both leave inside the frame (a label
    // cut by the frame's edge breaks into words).
    write_frames(&dir.path().join("cross.ewraw"), (480, 200), 50, |i, img| {
        if i >= 40 {
            return;
        }
        let step = 8.0 * i as f32;
        textimg::draw_text(
            img,
            &font,
            22.0,
            10.0 + step,
            ROW_A,
            "Bay 17-4431",
            [10, 10, 10],
        );
        textimg::draw_text(
            img,
            &font,
            22.0,
            340.0 - step,
            ROW_B,
            "Gate 22-0815",
            [10, 10, 10],
        );
    });
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/bench/cross/events");
    let cfg = common::write_config(
        dir.path(),
        &broker,
        "[[source]]\nname = \"cross\"\nkind = \"replay\"\npath = \"cross.ewraw\"\n[source.events]\nend_after_s = 2\nmin_move = 0.1\n",
        "[tiling]\nmode = \"off\"\n",
    );
    let mut daemon = Daemon::start(&cfg);
    let ev = sub
        .wait_until(Duration::from_secs(90), "two ends", |all| {
            all.iter().filter(|m| m.json()["type"] == "end").count() >= 2
        })
        .iter()
        .map(|m| m.json())
        .collect::<Vec<_>>();
    daemon.stop_cleanly();
    let mut tracks: std::collections::BTreeMap<u64, Vec<&serde_json::Value>> = Default::default();
    for e in &ev {
        tracks
            .entry(e["track_id"].as_u64().unwrap())
            .or_default()
            .push(e);
    }
    let summary: Vec<String> = tracks
        .iter()
        .map(|(id, es)| {
            let path: Vec<String> = es
                .iter()
                .map(|e| {
                    let (x, y) = centre(e);
                    let b = |i: usize| e["box"][i].as_f64().unwrap();
                    format!(
                        "{}@{x:.0},{y:.0}[{:.0}x{:.0}]",
                        e["type"].as_str().unwrap(),
                        b(2) - b(0),
                        b(3) - b(1)
                    )
                })
                .collect();
            format!("{id}: {}", path.join(" "))
        })
        .collect();
    eprintln!("tracks:\n{}", summary.join("\n"));
    assert_eq!(tracks.len(), 2, "two tracks, no more: {summary:#?}");
    let mut directions = Vec::new();
    for (id, es) in &tracks {
        let kinds: Vec<&str> = es.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds.first(), Some(&"new"), "{id}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"end"), "{id}: {kinds:?}");
        assert_eq!(kinds.iter().filter(|k| **k == "new").count(), 1);
        assert_eq!(kinds.iter().filter(|k| **k == "end").count(), 1);
        let xs: Vec<f64> = es.iter().map(|e| centre(e).0).collect();
        let ys: Vec<f64> = es.iter().map(|e| centre(e).1).collect();
        // A swap at the crossing would send a track back the way it came,
        // or onto the other row.
        let rising = xs.last() > xs.first();
        let sign = if rising { 1.0 } else { -1.0 };
        assert!(
            xs.windows(2).all(|w| sign * (w[1] - w[0]) >= 0.0),
            "{id} moves one way only: {xs:?}"
        );
        assert!(
            (xs.last().unwrap() - xs.first().unwrap()).abs() > 200.0,
            "{id} was followed across the frame: {xs:?}"
        );
        let spread = ys.iter().cloned().fold(f64::MIN, f64::max)
            - ys.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread < 17.0, "{id} stays on its row: {ys:?}");
        directions.push((rising, ys[0] < (ROW_A + ROW_B) as f64 / 2.0 - 8.0));
    }
    // One goes right on the upper row, the other left on the lower one.
    directions.sort();
    assert_eq!(directions, [(false, false), (true, true)], "{summary:#?}");
}

/// What one message costs in the outbox: its record (8 bytes of length and
/// CRC, 11 of kind, key and topic length, the topic, the payload) and the
/// 17-byte ack record written when the broker has it.
fn outbox_cost(m: &common::Received) -> u64 {
    (8 + 11 + m.topic.len() + m.payload.len() + 8 + 9) as u64
}

#[test]
fn a_static_scene_for_a_minute_is_a_handful_of_events_and_home_assistant_sees_it() {
    // One label, still, for 60 s at 5 fps; two sources read it: `frames`
    // (a message per inferred frame, as before events) and `events`.
    let dir = tempfile::tempdir().unwrap();
    let font = textimg::font();
    write_frames(
        &dir.path().join("still.ewraw"),
        (320, 240),
        300,
        |_, img| {
            textimg::draw_text(img, &font, 24.0, 20.0, 90.0, "Bay 17-4431", [10, 10, 10]);
        },
    );
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/bench/#");
    let port = common::free_port();
    let cfg = common::write_config(
        dir.path(),
        &broker,
        "[[source]]\nname = \"frames\"\nkind = \"replay\"\npath = \"still.ewraw\"\npublish = [\"frames\"]\n\
         [[source]]\nname = \"events\"\nkind = \"replay\"\npath = \"still.ewraw\"\n",
        &format!(
            "homeassistant = true\n[tiling]\nmode = \"off\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let started = std::time::Instant::now();
    let mut daemon = Daemon::start(&cfg);
    sub.wait_until(Duration::from_secs(30), "the events source's new", |all| {
        events_of(all, "events").iter().any(|e| e["type"] == "new")
    });

    // Home Assistant, starting later, finds the entities and their state
    // retained on the broker.
    let ha = Subscriber::connect(broker.port, "homeassistant/#");
    let state = Subscriber::connect(broker.port, "edgewatch/bench/#");
    let configs = ha.wait_until(Duration::from_secs(10), "two retained configs", |all| {
        all.len() >= 2
    });
    let retained = state.wait_until(Duration::from_secs(10), "status and objects", |all| {
        all.iter().filter(|m| m.retain).count() >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let configs = ha.all().into_iter().chain(configs).collect::<Vec<_>>();
    let topics: std::collections::BTreeSet<&str> =
        configs.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        topics.into_iter().collect::<Vec<_>>(),
        [
            "homeassistant/binary_sensor/edgewatch_bench/events_present/config",
            "homeassistant/sensor/edgewatch_bench/events_count/config"
        ],
        "one presence and one count entity, for the events source only"
    );
    let retained_on = |t: &str| {
        retained
            .iter()
            .find(|m| m.retain && m.topic == t)
            .unwrap_or_else(|| panic!("nothing retained on {t}"))
    };
    assert_eq!(retained_on("edgewatch/bench/status").payload, b"online");
    let objects = retained_on("edgewatch/bench/events/objects").json();
    assert_eq!(objects["count"], 1, "{objects}");
    for m in &configs {
        assert!(m.retain, "{} is retained", m.topic);
        let c = m.json();
        // Home Assistant's MQTT discovery schema: the state and
        // availability topics, their payloads, a unique id and a device.
        assert_eq!(c["state_topic"], "edgewatch/bench/events/objects");
        assert_eq!(c["availability_topic"], "edgewatch/bench/status");
        assert_eq!(c["payload_available"], "online");
        assert_eq!(c["payload_not_available"], "offline");
        assert!(c["unique_id"]
            .as_str()
            .unwrap()
            .starts_with("edgewatch_bench_events_"));
        assert_eq!(c["device"]["identifiers"][0], "edgewatch_bench");
        // The templates read the state's `count`.
        assert!(c["value_template"]
            .as_str()
            .unwrap()
            .contains("value_json.count"));
    }
    let present = configs
        .iter()
        .find(|m| m.topic.contains("binary_sensor"))
        .unwrap()
        .json();
    assert_eq!(present["device_class"], "occupancy");
    assert_eq!(
        (
            present["payload_on"].as_str(),
            present["payload_off"].as_str()
        ),
        (Some("ON"), Some("OFF"))
    );

    // The minute plays out; then the figures, once the outbox is idle.
    let captured = |m: &str, src: &str| {
        common::metric(
            m,
            &format!("edgewatch_camera_frames_total{{source=\"{src}\",outcome=\"captured\"}}"),
        )
        .unwrap_or(0.0)
    };
    let deadline = started + Duration::from_secs(120);
    let mut metrics = loop {
        let (_, m) = common::http_get(port, "/metrics");
        if captured(&m, "frames") >= 300.0 && captured(&m, "events") >= 300.0 {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replay did not finish in 120 s"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let wear = |m: &str| {
        (
            common::metric(m, "edgewatch_outbox_written_bytes").unwrap(),
            common::metric(m, "edgewatch_outbox_syncs").unwrap(),
            common::metric(m, "edgewatch_outbox_messages").unwrap(),
        )
    };
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (_, m) = common::http_get(port, "/metrics");
        let idle = wear(&m) == wear(&metrics) && wear(&m).2 == 0.0;
        metrics = m;
        if idle {
            break;
        }
    }
    let all = sub.all();
    daemon.stop_cleanly();

    let frames: Vec<_> = all
        .iter()
        .filter(|m| m.topic.starts_with("edgewatch/bench/frames/"))
        .collect();
    let events: Vec<_> = all
        .iter()
        .filter(|m| m.topic.starts_with("edgewatch/bench/events/"))
        .collect();
    let inferred = common::metric(
        &metrics,
        "edgewatch_camera_frames_total{source=\"frames\",outcome=\"inferred\"}",
    )
    .unwrap();
    let frame_topics: std::collections::BTreeSet<&str> =
        frames.iter().map(|m| m.topic.as_str()).collect();
    assert_eq!(
        frame_topics.into_iter().collect::<Vec<_>>(),
        ["edgewatch/bench/frames/detections"]
    );
    assert_eq!(
        frames.len() as f64,
        inferred,
        "a message per inferred frame"
    );
    assert!(inferred >= 50.0, "the frames source kept up: {inferred}");
    let kinds: Vec<String> = events
        .iter()
        .map(|m| m.topic.rsplit('/').next().unwrap().to_string())
        .collect();
    assert!(
        events.len() <= 6,
        "a handful of messages for a minute of a still label: {kinds:?}"
    );
    assert_eq!(
        events_of(&all, "events")
            .iter()
            .filter(|e| e["type"] == "new")
            .count(),
        1
    );
    // The outbox's own count of what it wrote is exactly what these
    // messages cost: nothing else went through it.
    let (written, syncs, _) = wear(&metrics);
    let bytes = |ms: &[&common::Received]| ms.iter().map(|m| outbox_cost(m)).sum::<u64>();
    let (fb, eb) = (bytes(&frames), bytes(&events));
    assert_eq!(written, (fb + eb) as f64, "outbox bytes written");
    assert_eq!(
        syncs,
        (frames.len() + events.len()) as f64,
        "one sync per message"
    );
    // Per hour, at the defaults: frame messages at the rate they were
    // inferred; for events, the one-offs measured here plus one timed
    // `update` a minute (update_interval_s = 60), each costing what `new` did.
    let new_cost = events
        .iter()
        .find(|m| m.topic.ends_with("/events"))
        .map(|m| outbox_cost(m))
        .unwrap();
    let per_hour = 3600.0 / 60.0;
    eprintln!(
        "FIGURES static 60 s @5 fps: frames source {} messages ({inferred} inferred), {fb} outbox bytes, \
         {} syncs -> {:.0} messages/h, {:.1} MB/h; events source {} messages {kinds:?}, {eb} outbox bytes \
         -> {} messages/h, {:.3} MB/h",
        frames.len(),
        frames.len(),
        frames.len() as f64 * per_hour,
        fb as f64 * per_hour / 1e6,
        events.len(),
        events.len() + 60,
        (eb + 60 * new_cost) as f64 / 1e6,
    );
}

#[test]
fn with_motion_and_tiles_only_the_changed_tiles_run_and_a_still_label_stays_found() {
    // 640×320 cut into 224 px tiles: a label sits still at the top left,
    // another crosses the bottom 8 px a frame for 8 s, then goes. With
    // `motion = true` the top tiles keep their map from their last run.
    let dir = tempfile::tempdir().unwrap();
    let font = textimg::font();
    write_frames(&dir.path().join("tiles.ewraw"), (640, 320), 60, |i, img| {
        textimg::draw_text(img, &font, 24.0, 30.0, 60.0, "Dock 9-1200", [10, 10, 10]);
        if i < 40 {
            let x = 20.0 + 8.0 * i as f32;
            textimg::draw_text(img, &font, 24.0, x, 270.0, "Bay 17-4431", [10, 10, 10]);
        }
    });
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/bench/+/events");
    let port = common::free_port();
    let source = |name: &str, extra: &str| {
        format!(
            "[[source]]\nname = \"{name}\"\nkind = \"replay\"\npath = \"tiles.ewraw\"\n{extra}\n[source.events]\nend_after_s = 2\n"
        )
    };
    let cfg = common::write_config(
        dir.path(),
        &broker,
        &format!(
            "{}{}",
            source("plain", ""),
            source("reuse", "motion = true\nmotion_refresh_s = 60")
        ),
        &format!(
            "[tiling]\nmode = \"tiles\"\ntile = 224\noverlap = 32\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    let mut daemon = Daemon::start(&cfg);
    // The crossing label ends on both sources (the still one stays).
    sub.wait_until(
        Duration::from_secs(120),
        "the moving label's end on both",
        |all| {
            ["plain", "reuse"]
                .iter()
                .all(|s| events_of(all, s).iter().any(|e| e["type"] == "end"))
        },
    );
    let (_, metrics) = common::http_get(port, "/metrics");
    daemon.stop_cleanly();
    let all = sub.all();
    let tiles = |src: &str, outcome: &str| {
        common::metric(
            &metrics,
            &format!("edgewatch_tiles_total{{source=\"{src}\",outcome=\"{outcome}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let pixels = |src: &str| {
        common::metric(
            &metrics,
            &format!("edgewatch_model_pixels_total{{source=\"{src}\"}}"),
        )
        .unwrap()
    };
    let inferred = |src: &str| {
        common::metric(
            &metrics,
            &format!("edgewatch_camera_frames_total{{source=\"{src}\",outcome=\"inferred\"}}"),
        )
        .unwrap()
    };
    eprintln!(
        "FIGURES tile reuse: plain {} frames, {} tiles run, {} model px; reuse {} frames, {} tiles run, {} reused, {} model px",
        inferred("plain"),
        tiles("plain", "run"),
        pixels("plain"),
        inferred("reuse"),
        tiles("reuse", "run"),
        tiles("reuse", "reused"),
        pixels("reuse")
    );
    assert_eq!(tiles("plain", "reused"), 0.0, "plain passes run every tile");
    assert!(tiles("reuse", "reused") > 0.0, "still tiles kept their map");
    let per_frame = |src: &str| tiles(src, "run") / inferred(src);
    assert!(
        per_frame("reuse") < 0.8 * per_frame("plain"),
        "fewer tiles a frame: {} vs {}",
        per_frame("reuse"),
        per_frame("plain")
    );
    // Both sources saw the same two labels the same way: the still one
    // from its first frame to the stop, the moving one across the frame.
    for src in ["plain", "reuse"] {
        let ev = events_of(&all, src);
        let mut tracks: std::collections::BTreeMap<u64, Vec<&serde_json::Value>> =
            Default::default();
        for e in &ev {
            tracks
                .entry(e["track_id"].as_u64().unwrap())
                .or_default()
                .push(e);
        }
        assert_eq!(tracks.len(), 2, "{src}: {ev:#?}");
        let (still, moving): (Vec<_>, Vec<_>) =
            tracks.values().partition(|es| centre(es[0]).1 < 160.0);
        let (still, moving) = (still[0], moving[0]);
        let kinds = |es: &[&serde_json::Value]| -> Vec<String> {
            es.iter()
                .map(|e| e["type"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            kinds(still).first().map(String::as_str),
            Some("new"),
            "{src}"
        );
        assert_eq!(
            kinds(still).iter().filter(|k| *k == "end").count(),
            1,
            "{src}: the still label ends only at the stop: {:?}",
            kinds(still)
        );
        assert_eq!(still.last().unwrap()["type"], "end");
        let frames = still.last().unwrap()["frames"].as_u64().unwrap();
        assert!(
            frames as f64 >= 0.9 * inferred(src),
            "{src}: the still label was in {frames} of {} inferred frames",
            inferred(src)
        );
        let xs: Vec<f64> = moving.iter().map(|e| centre(e).0).collect();
        assert_eq!(kinds(moving).first().map(String::as_str), Some("new"));
        assert_eq!(kinds(moving).last().map(String::as_str), Some("end"));
        assert!(
            xs.last().unwrap() - xs[0] > 200.0,
            "{src}: the moving label was followed: {xs:?}"
        );
    }
}

/// A replay that ends while its label is in view (a camera that dies): the
/// object is kept for end_after_s plus `silent_grace_s`, the retained
/// `objects` state says `"silent": true` meanwhile, then `end` and count 0
/// come, within that time and not the old fixed 10 s later.
#[test]
fn a_stream_that_ends_says_silent_then_ends_its_objects_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let font = textimg::font();
    // 3 s at 5 fps, the label in view all along.
    write_frames(&dir.path().join("short.ewraw"), (320, 240), 15, |_, img| {
        textimg::draw_text(img, &font, 24.0, 20.0, 90.0, "Bay 17-4431", [10, 10, 10]);
    });
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let cfg = common::write_config(
        dir.path(),
        &broker,
        "[[source]]\nname = \"cam\"\nkind = \"replay\"\npath = \"short.ewraw\"\n[source.events]\nend_after_s = 1\nsilent_grace_s = 3\n",
        "[tiling]\nmode = \"off\"\n",
    );
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("short.ewraw ended after", Duration::from_secs(60));
    let ended_at = std::time::Instant::now();
    let all = sub.wait_until(Duration::from_secs(30), "the end event", |all| {
        events_of(all, "cam").iter().any(|e| e["type"] == "end")
    });
    let waited = ended_at.elapsed();
    daemon.stop_cleanly();
    // end_after_s 1 + grace 3 + a frame interval; well under the old 10 s extra.
    assert!(
        waited < Duration::from_secs(8),
        "ended {waited:?} after the stream"
    );
    let states: Vec<(u64, bool)> = all
        .iter()
        .filter(|m| m.topic == "edgewatch/bench/cam/objects")
        .map(|m| {
            let v = m.json();
            (v["count"].as_u64().unwrap(), v["silent"].as_bool().unwrap())
        })
        .collect();
    assert!(
        states.contains(&(1, true)),
        "the silence was said: {states:?}"
    );
    assert_eq!(states.last(), Some(&(0, false)), "{states:?}");
}
