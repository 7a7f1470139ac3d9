//! `/healthz` and `/metrics` scraped over real HTTP after real frames.

use crate::common;

use std::time::Duration;

use common::{http_get, metric, Broker, Daemon, Subscriber};

#[test]
fn metrics_match_what_was_processed() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let port = common::free_port();
    let cfg = dir.path().join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[[source]]\nname = \"inbox\"\nkind = \"folder\"\npath = \"inbox\"\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n[tiling]\nmode = \"off\"\n",
            common::model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    for seed in 0..3u64 {
        let (img, _) = common::textimg::render(640, 360, 60 + seed, 3, 26, 34);
        common::save(&img, &inbox.join(format!("ok{seed}.png")));
    }
    std::fs::write(inbox.join("bad.jpg"), b"no image here").unwrap();
    let mut daemon = Daemon::start(&cfg);
    let got = sub.wait_until(Duration::from_secs(60), "3 messages", |all| all.len() >= 3);
    let published: f64 = got
        .iter()
        .map(|m| m.json()["detections"].as_array().unwrap().len() as f64)
        .sum();
    // The failed file and the acks land right after the last message.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let text = loop {
        let (code, text) = http_get(port, "/metrics");
        assert_eq!(code, 200);
        let settled = metric(
            &text,
            "edgewatch_frames_total{source=\"inbox\",outcome=\"failed\"}",
        ) == Some(1.0)
            && metric(&text, "edgewatch_outbox_messages") == Some(0.0);
        if settled || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("{text}");
    assert_eq!(
        metric(
            &text,
            "edgewatch_frames_total{source=\"inbox\",outcome=\"done\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "edgewatch_frames_total{source=\"inbox\",outcome=\"failed\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "edgewatch_detections_total{source=\"inbox\"}"),
        Some(published)
    );
    assert!(published >= 6.0, "the images hold text: {published}");
    assert_eq!(
        metric(
            &text,
            "edgewatch_frame_stage_seconds_count{stage=\"infer\"}"
        ),
        Some(3.0)
    );
    assert!(metric(&text, "edgewatch_frame_stage_seconds_sum{stage=\"total\"}").unwrap() > 0.0);
    assert_eq!(metric(&text, "edgewatch_outbox_messages"), Some(0.0));
    assert_eq!(metric(&text, "edgewatch_mqtt_connected"), Some(1.0));
    assert!(metric(&text, "edgewatch_mqtt_acked_messages").unwrap() >= 3.0);
    assert!(metric(&text, "edgewatch_resident_memory_bytes").unwrap() > 10e6);
    assert_eq!(metric(&text, "edgewatch_stalled_stages"), Some(0.0));
    assert!(
        text.contains("edgewatch_model_info{") && text.contains("backend=\"tract-cpu\""),
        "model info"
    );

    assert_eq!(http_get(port, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(port, "/nope").0, 404);
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(20)).success());
}

#[test]
fn a_taken_port_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = dir.path().join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[[source]]\nname = \"inbox\"\nkind = \"folder\"\npath = \"inbox\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\noutbox = \"outbox\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n[tiling]\nmode = \"off\"\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&cfg);
    let status = daemon.wait(Duration::from_secs(60));
    assert!(!status.success());
    daemon.wait_log("telemetry.listen", Duration::from_secs(1));
}
