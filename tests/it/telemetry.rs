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
        text.contains("edgewatch_model_info{")
            && text.contains(&format!("backend=\"{}\"", common::auto_label())),
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
    // "ready" only once everything that can stop the start has started.
    assert!(
        !daemon.log().iter().any(|l| l.contains("edgewatch ready")),
        "{}",
        daemon.log().join("\n")
    );
}

/// A real Prometheus (Debian's) scrapes the daemon every second: the target
/// is `up` and a query returns the resident memory. The body it gets (it
/// asks for OpenMetrics first) and the plain one (curl, promtool) are both
/// accepted: `promtool check metrics` passes on the latter, with every
/// family described from the first scrape.
#[test]
fn a_real_prometheus_scrapes_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let cfg = dir.path().join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[[source]]\nname = \"inbox\"\nkind = \"folder\"\npath = \"inbox\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\noutbox = \"outbox\"\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));

    let (code, text) = http_get(port, "/metrics");
    assert_eq!(code, 200);
    for family in [
        "edgewatch_frames_total counter",
        "edgewatch_stage_restarts_total counter",
        "edgewatch_frame_stage_seconds histogram",
        "edgewatch_mqtt_acked_messages_total counter",
        "edgewatch_outbox_written_bytes_total counter",
        "edgewatch_model_info gauge",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}\n")),
            "no `# TYPE {family}`:\n{text}"
        );
    }
    assert!(
        !text.contains("# EOF"),
        "OpenMetrics in the 0.0.4 body:\n{text}"
    );
    let promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(text.as_bytes());
    assert!(
        promtool.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );

    let web = common::free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: edgewatch\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let mut prom = std::process::Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start prometheus (Debian's package; deploy/install-deps.sh --tests installs it)");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (health, error) = loop {
        let body = try_get(web, "/api/v1/targets").unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let target = &v["data"]["activeTargets"][0];
        let health = target["health"].as_str().unwrap_or("").to_string();
        if health == "up" || (health == "down" && std::time::Instant::now() > deadline) {
            break (
                health,
                target["lastError"].as_str().unwrap_or("").to_string(),
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scrape within 60 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(health, "up", "Prometheus says: {error}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let rss = loop {
        let (_, body) = http_get(web, "/api/v1/query?query=edgewatch_resident_memory_bytes");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        if let Some(value) = v["data"]["result"][0]["value"][1].as_str() {
            break value.parse::<f64>().unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "no sample: {body}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(rss > 10e6, "{rss}");
    let _ = prom.kill();
    let _ = prom.wait();
    daemon.stop_cleanly();
}

/// `http_get` once the server listens (Prometheus takes a moment to start).
fn try_get(port: u16, path: &str) -> Option<String> {
    std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    Some(http_get(port, path).1)
}

trait OutputWithStdin {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output;
}

impl OutputWithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start promtool (Debian's prometheus package)");
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}
