//! The daemon end to end: a real mosquitto, a watched folder of 1080p images,
//! a real subscriber, real signals.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::textimg::{boxes_of, recall, render};
use common::{Broker, Daemon, Subscriber};

fn write_config(dir: &Path, broker_url: &str) -> std::path::PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"device = "line-3-cam"
[model]
path = {model:?}
[[source]]
name = "inbox"
kind = "folder"
path = "inbox"
settle_ms = 200
[mqtt]
url = "{broker_url}"
topic_prefix = "edgewatch"
outbox = "outbox"
"#,
            model = common::model_path().display().to_string()
        ),
    )
    .unwrap();
    cfg
}

fn number(v: &serde_json::Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn folder_to_mqtt_with_bad_files_and_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let cfg = write_config(dir.path(), &broker.url());
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();

    // Files present before start are found by the start-up scan.
    let mut truth = std::collections::HashMap::new();
    for seed in 0..3u64 {
        let (img, boxes) = render(1920, 1080, 500 + seed, 8, 26, 44);
        let name = format!("early{seed}.jpg");
        common::save(&img, &inbox.join(&name));
        truth.insert(name, boxes);
    }
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));

    // Files written while running are found by inotify; bad ones fail alone.
    for seed in 3..6u64 {
        let (img, boxes) = render(1920, 1080, 500 + seed, 8, 26, 44);
        let name = format!("late{seed}.png");
        let staged = dir.path().join(&name);
        common::save(&img, &staged);
        std::fs::rename(&staged, inbox.join(&name)).unwrap();
        truth.insert(name, boxes);
    }
    std::fs::write(inbox.join("zero.jpg"), b"").unwrap();
    std::fs::write(inbox.join("notes.txt"), b"shift report: nothing to see").unwrap();
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(image::RgbImage::new(300, 200))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    std::fs::write(inbox.join("truncated.png"), &png[..png.len() / 3]).unwrap();

    let detections_topic = "edgewatch/line-3-cam/inbox/detections";
    let got = sub.wait_until(Duration::from_secs(120), "6 detection messages", |all| {
        all.iter().filter(|m| m.topic == detections_topic).count() >= 6
    });
    let online = got
        .iter()
        .find(|m| m.topic == "edgewatch/line-3-cam/status")
        .expect("status published");
    assert_eq!(online.payload, b"online");

    let messages: Vec<_> = got
        .iter()
        .filter(|m| m.topic == detections_topic)
        .map(|m| m.json())
        .collect();
    assert_eq!(messages.len(), 6, "exactly one message per good image");
    let mut ids = std::collections::HashSet::new();
    let (mut hits, mut total) = (0.0, 0);
    for m in &messages {
        assert_eq!(m["schema"], "edgewatch.detections/1");
        assert_eq!(m["device"], "line-3-cam");
        assert_eq!(m["source"], "inbox");
        assert!(m["id"].as_str().unwrap().starts_with("inbox-"));
        assert!(
            ids.insert(m["id"].as_str().unwrap().to_string()),
            "ids are unique"
        );
        assert!(m["seq"].as_u64().unwrap() >= 1);
        let at = m["captured_at"].as_str().unwrap();
        assert!(
            at.ends_with('Z') && at.len() == "2026-11-22T12:00:00.123Z".len(),
            "{at}"
        );
        assert_eq!(m["image"]["width"], 1920);
        assert_eq!(m["image"]["height"], 1080);
        assert_eq!(m["model"]["name"], "ppocr-det-v4");
        assert_eq!(m["model"]["backend"], common::auto_label());
        for k in ["decode", "infer", "post", "total"] {
            number(&m["timing_ms"][k], k);
        }
        for d in m["detections"].as_array().unwrap() {
            assert_eq!(d["label"], "text");
            assert_eq!(d["class_id"], 0);
            let s = number(&d["score"], "score");
            assert!((0.5..=1.0).contains(&s), "score {s}");
            assert_eq!(d["quad"].as_array().unwrap().len(), 4);
        }
        let path = m["image"]["path"].as_str().unwrap();
        let name = Path::new(path).file_name().unwrap().to_str().unwrap();
        let t = &truth[name];
        hits += recall(t, &boxes_of(m), 0.3) * t.len() as f32;
        total += t.len();
    }
    let r = hits / total as f32;
    assert!(r >= 0.95, "recall {r:.3} < 0.95");

    // Bad files end in failed/ with a reason; good ones in done/.
    for (bad, why) in [
        ("zero.jpg", "empty"),
        ("notes.txt", "not a supported image"),
        ("truncated.png", "truncated"),
    ] {
        let record = dir.path().join(format!("failed/{bad}.error.json"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !record.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&record).unwrap();
        // One line, as docs/sources.md says (tail, jq -c, log shippers).
        assert_eq!(text.lines().count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["stage"], "decode", "{bad}");
        assert!(
            v["error"].as_str().unwrap().contains(why),
            "{bad}: {}",
            v["error"]
        );
        assert!(dir.path().join("failed").join(bad).exists());
    }
    for name in truth.keys() {
        assert!(
            dir.path().join("done").join(name).exists(),
            "{name} in done/"
        );
    }
    let leftover: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .collect();
    assert!(leftover.is_empty(), "inbox drained: {leftover:?}");

    // SIGTERM: clean stop, exit 0, retained status flips to offline.
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(20));
    assert!(status.success(), "exit status {status:?}");
    sub.wait_until(Duration::from_secs(10), "offline status", |all| {
        all.iter()
            .any(|m| m.topic == "edgewatch/line-3-cam/status" && m.payload == b"offline")
    });
    let late = Subscriber::connect(broker.port, "edgewatch/line-3-cam/status");
    let retained = late.wait_until(Duration::from_secs(5), "retained status", |all| {
        !all.is_empty()
    });
    assert!(retained[0].retain && retained[0].payload == b"offline");
}

#[test]
fn starts_without_a_broker_and_delivers_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = write_config(dir.path(), &format!("mqtt://127.0.0.1:{port}"));
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let (img, _) = render(1280, 720, 42, 5, 28, 40);
    common::save(&img, &inbox.join("waiting.jpg"));

    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("unreachable", Duration::from_secs(60));
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let broker = Broker::start_on(port);
    let sub = Subscriber::connect(broker.port, "edgewatch/line-3-cam/inbox/detections");
    // The message was queued before the subscriber existed; dropping the test
    // image again proves fresh traffic flows once connected.
    common::save(&img, &dir.path().join("again.jpg"));
    std::fs::rename(dir.path().join("again.jpg"), inbox.join("again.jpg")).unwrap();
    let got = sub.wait_until(
        Duration::from_secs(90),
        "a detection after the broker appeared",
        |all| {
            all.iter().any(|m| {
                m.json()["image"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("again.jpg")
            })
        },
    );
    assert!(!got.is_empty());
    daemon.wait_log("connected to MQTT broker", Duration::from_secs(5));
    daemon.signal("INT");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn files_left_in_processing_by_a_crash_are_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let cfg = write_config(dir.path(), &broker.url());
    let processing = dir.path().join("inbox/.processing");
    std::fs::create_dir_all(&processing).unwrap();
    let (img, _) = render(960, 540, 9, 4, 24, 36);
    common::save(&img, &processing.join("crashed.png"));

    let mut daemon = Daemon::start(&cfg);
    sub.wait_until(
        Duration::from_secs(60),
        "the re-queued file's message",
        |all| {
            all.iter().any(|m| {
                m.json()["image"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("inbox/crashed.png")
            })
        },
    );
    daemon.wait_log("re-queuing", Duration::from_secs(5));
    let done = dir.path().join("done/crashed.png");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(done.exists() && !processing.join("crashed.png").exists());
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn sighup_applies_a_threshold_change_to_the_next_frame() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/line-3-cam/inbox/detections");
    let cfg = write_config(dir.path(), &broker.url());
    let original = std::fs::read_to_string(&cfg).unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let (img, truth) = render(960, 540, 21, 4, 28, 36);
    let drop_as = |name: &str| {
        let staged = dir.path().join(name);
        common::save(&img, &staged);
        std::fs::rename(&staged, inbox.join(name)).unwrap();
    };
    let found_for = |name: &str| {
        let got = sub.wait_until(Duration::from_secs(60), name, |all| {
            all.iter().any(|m| {
                m.json()["image"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(name)
            })
        });
        let m = got
            .iter()
            .find(|m| {
                m.json()["image"]["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with(name)
            })
            .unwrap();
        m.json()["detections"].as_array().unwrap().len()
    };
    drop_as("before.png");
    assert_eq!(
        found_for("before.png"),
        truth.len(),
        "default thresholds find every line"
    );

    // Scores of this text are about 0.7-0.85: a 0.99 box threshold keeps none.
    std::fs::write(&cfg, format!("{original}[decode]\nbox_threshold = 0.99\n")).unwrap();
    daemon.signal("HUP");
    daemon.wait_log("configuration reloaded", Duration::from_secs(10));
    drop_as("after.png");
    assert_eq!(
        found_for("after.png"),
        0,
        "the new threshold applies to the next frame"
    );

    // A broken file is refused and the daemon runs on with what it had.
    std::fs::write(&cfg, format!("{original}[decode]\nthreshold = 7\n")).unwrap();
    daemon.signal("HUP");
    daemon.wait_log("reload failed", Duration::from_secs(10));
    assert!(
        daemon.log().iter().any(|l| l.contains("decode.threshold")),
        "names the key"
    );
    // A model change needs a restart, and says so (broker changes apply
    // live: tests/it/reload_sources.rs).
    assert!(original.contains("[model]\n"));
    std::fs::write(
        &cfg,
        original.replace("[model]\n", "[model]\nworkers = 1\n"),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon.wait_log(
        "model.workers changed; restart edgewatch to apply",
        Duration::from_secs(10),
    );
    drop_as("still.png");
    assert_eq!(
        found_for("still.png"),
        truth.len(),
        "running on with the same model, default thresholds restored"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}
