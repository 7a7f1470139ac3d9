//! SIGHUP reconciles sources without a restart: a new folder starts, a
//! removed one stops (and is no longer counted as a stage), the model stays.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::textimg::render;
use common::{Broker, Daemon, Subscriber};

fn write_config(path: &Path, broker: &Broker, http: u16, sources: &[&str]) {
    let mut text = format!(
        "device = \"dev\"\n[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n\
         [mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n\
         [supervise]\nstall_timeout_s = 2\n[telemetry]\nlisten = \"127.0.0.1:{http}\"\n",
        common::model_path().display().to_string(),
        broker.url()
    );
    for name in sources {
        text.push_str(&format!(
            "[[source]]\nname = \"{name}\"\nkind = \"folder\"\npath = \"{name}/inbox\"\nsettle_ms = 100\n"
        ));
    }
    std::fs::write(path, text).unwrap();
}

fn drop_image(dir: &Path, inbox: &Path, name: &str, seed: u64) {
    let (img, _) = render(640, 360, seed, 3, 24, 30);
    let tmp = dir.join(name);
    common::save(&img, &tmp);
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

#[test]
fn sighup_adds_and_removes_sources_live() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/dev/+/detections");
    let http = common::free_port();
    let cfg = root.join("edgewatch.toml");
    write_config(&cfg, &broker, http, &["a"]);
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    drop_image(root, &root.join("a/inbox"), "one.jpg", 1);
    sub.wait_until(Duration::from_secs(60), "a frame from a", |m| {
        m.iter().any(|r| r.topic == "edgewatch/dev/a/detections")
    });

    write_config(&cfg, &broker, http, &["b"]);
    daemon.signal("HUP");
    daemon.wait_log("reload: source a stopped", Duration::from_secs(20));
    daemon.wait_log("reload: source b started", Duration::from_secs(20));
    drop_image(root, &root.join("b/inbox"), "two.jpg", 2);
    sub.wait_until(Duration::from_secs(60), "a frame from b", |m| {
        m.iter().any(|r| r.topic == "edgewatch/dev/b/detections")
    });
    // a is no longer watched: its file stays put.
    drop_image(root, &root.join("a/inbox"), "three.jpg", 3);
    std::thread::sleep(Duration::from_secs(3));
    assert!(root.join("a/inbox/three.jpg").exists());
    let from_a = sub
        .all()
        .iter()
        .filter(|r| r.topic == "edgewatch/dev/a/detections")
        .count();
    assert_eq!(from_a, 1);
    // The stopped source is not a stalled stage (stall_timeout_s = 2 has passed).
    let (code, body) = common::http_get(http, "/healthz");
    assert_eq!(code, 200, "{body}");
    // Nothing here needed a restart, and the model was not reloaded.
    assert!(daemon
        .log()
        .iter()
        .all(|l| !l.contains("restart edgewatch to apply")));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}

#[test]
fn sighup_moves_publishing_to_a_new_broker_and_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (a, b) = (Broker::start(), Broker::start());
    let sub_a = Subscriber::connect(a.port, "#");
    let sub_b = Subscriber::connect(b.port, "#");
    let cfg = root.join("edgewatch.toml");
    let write = |url: &str, prefix: &str| {
        std::fs::write(
            &cfg,
            format!(
                "device = \"dev\"\n[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n\
                 [[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n\
                 [mqtt]\nurl = \"{url}\"\ntopic_prefix = \"{prefix}\"\noutbox = \"outbox\"\n",
                common::model_path().display().to_string()
            ),
        )
        .unwrap()
    };
    write(&a.url(), "edgewatch");
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    drop_image(root, &root.join("inbox"), "one.jpg", 1);
    sub_a.wait_until(Duration::from_secs(60), "a frame on broker a", |m| {
        m.iter().any(|r| r.topic == "edgewatch/dev/in/detections")
    });

    write(&b.url(), "plant");
    daemon.signal("HUP");
    daemon.wait_log("MQTT settings reloaded", Duration::from_secs(20));
    // The old broker is told the device went away, cleanly.
    sub_a.wait_until(Duration::from_secs(20), "offline on broker a", |m| {
        m.iter()
            .any(|r| r.topic == "edgewatch/dev/status" && r.payload == b"offline")
    });
    sub_b.wait_until(Duration::from_secs(20), "online on broker b", |m| {
        m.iter()
            .any(|r| r.topic == "plant/dev/status" && r.payload == b"online")
    });
    drop_image(root, &root.join("inbox"), "two.jpg", 2);
    let got = sub_b.wait_until(Duration::from_secs(60), "a frame on broker b", |m| {
        m.iter().any(|r| r.topic == "plant/dev/in/detections")
    });
    let frame = got
        .iter()
        .find(|r| r.topic == "plant/dev/in/detections")
        .unwrap()
        .json();
    assert!(frame["image"]["path"]
        .as_str()
        .unwrap()
        .ends_with("two.jpg"));
    assert!(!daemon
        .log()
        .iter()
        .any(|l| l.contains("restart edgewatch to apply")));
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}
