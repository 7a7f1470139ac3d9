//! Stage restarts with back-off, on real failures: a watched folder that
//! vanishes comes back; one that cannot come back makes the daemon give up
//! and exit non-zero, so systemd restarts it.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::textimg::render;
use common::{Broker, Daemon, Subscriber};

fn write_config(dir: &Path, broker: &Broker, http: u16) -> std::path::PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n\
             [[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\nrescan_s = 1\n\
             [mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n\
             [supervise]\nmax_restarts = 2\nrestart_window_s = 60\n\
             [telemetry]\nlisten = \"127.0.0.1:{http}\"\n",
            common::model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_vanished_folder_is_restarted_and_serves_again() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let http = common::free_port();
    let cfg = write_config(dir.path(), &broker, http);
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let inbox = dir.path().join("inbox");

    std::fs::remove_dir_all(&inbox).unwrap();
    daemon.wait_log(
        "stage source:in failed: folder source",
        Duration::from_secs(20),
    );
    daemon.wait_log("restarting it in 1 s", Duration::from_secs(5));
    // The restarted source re-creates its inbox and takes files again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !inbox.is_dir() {
        assert!(Instant::now() < deadline, "inbox was not re-created");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.wait_log("watching", Duration::from_secs(10));
    let (img, _) = render(640, 360, 77, 3, 24, 30);
    common::save(&img, &dir.path().join("late.jpg"));
    std::fs::rename(dir.path().join("late.jpg"), inbox.join("late.jpg")).unwrap();
    sub.wait_until(
        Duration::from_secs(60),
        "the frame after the restart",
        |m| !m.is_empty(),
    );
    let (_, metrics) = common::http_get(http, "/metrics");
    assert!(
        metrics.contains("edgewatch_stage_restarts_total{stage=\"source:in\"} 1"),
        "{metrics}"
    );
    assert!(daemon.alive());
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}

#[test]
fn a_stage_that_keeps_failing_makes_the_daemon_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let cfg = write_config(dir.path(), &broker, common::free_port());
    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    // A file where the inbox was: the folder can never be opened again.
    let inbox = dir.path().join("inbox");
    std::fs::remove_dir_all(&inbox).unwrap();
    std::fs::write(&inbox, b"not a directory").unwrap();
    let started = Instant::now();
    let status = daemon.wait(Duration::from_secs(60));
    assert!(!status.success(), "exited {status:?}");
    let log = daemon.log().join("\n");
    assert!(log.contains("restarting it in 1 s"), "{log}");
    assert!(log.contains("restarting it in 2 s"), "{log}");
    assert!(
        log.contains("stage source:in failed 3 times within 60 s"),
        "{log}"
    );
    // 1 s + 2 s of back-off, plus detection: not instant, not slow.
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(30),
        "{took:?}"
    );
}
