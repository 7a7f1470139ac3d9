//! The daemon under a stand-in for systemd: a real unix datagram socket as
//! NOTIFY_SOCKET, a real WATCHDOG_USEC, real signals.

use crate::common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::{Broker, Daemon};

/// Binds a notify socket and starts the daemon with NOTIFY_SOCKET and a 1 s
/// WATCHDOG_USEC; `model_extra` lines go into `[model]`, `tail` after the rest.
fn start_under_systemd(
    dir: &std::path::Path,
    broker: &Broker,
    model_extra: &str,
    tail: &str,
    binary: &std::path::Path,
) -> (UnixDatagram, Daemon) {
    let sock_path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n{model_extra}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n[tiling]\nmode = \"off\"\n{tail}",
            common::model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    let env = [
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "1000000"),
    ];
    let daemon = Daemon::start_binary(binary, &cfg, &env);
    (sock, daemon)
}

#[test]
fn ready_then_regular_watchdog_pings_status_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let (sock, mut daemon) = start_under_systemd(
        dir.path(),
        &broker,
        "",
        "",
        std::path::Path::new(common::bin()),
    );

    let mut seen: Vec<(Duration, String)> = Vec::new();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let mut read_until = |seen: &mut Vec<(Duration, String)>, until: Duration| {
        while started.elapsed() < until {
            if let Ok(n) = sock.recv(&mut buf) {
                seen.push((
                    started.elapsed(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                ));
            }
        }
    };
    read_until(&mut seen, Duration::from_secs(12));
    let ready_at = seen
        .iter()
        .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no READY=1 in {seen:?}"));
    let pings: Vec<Duration> = seen
        .iter()
        .filter(|(t, m)| *t >= ready_at && m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    // At half of the 1 s interval: about 2 a second after READY.
    let after_ready = started.elapsed() - ready_at;
    assert!(
        pings.len() as f64 >= after_ready.as_secs_f64() * 1.5,
        "{} pings in {after_ready:?}: {seen:?}",
        pings.len()
    );
    for w in pings.windows(2) {
        assert!(
            w[1] - w[0] < Duration::from_millis(900),
            "gap between pings {:?}",
            w[1] - w[0]
        );
    }
    assert!(
        seen.iter()
            .any(|(_, m)| m.contains("STATUS=") && m.contains("frames") && m.contains("outbox")),
        "a STATUS= summary: {seen:?}"
    );

    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(20));
    assert!(status.success());
    read_until(&mut seen, started.elapsed() + Duration::from_millis(500));
    assert!(
        seen.iter()
            .any(|(_, m)| m.lines().any(|l| l == "STOPPING=1")),
        "STOPPING=1 on SIGTERM"
    );
    eprintln!("notify exchange:");
    for (t, m) in seen
        .iter()
        .filter(|(_, m)| !m.starts_with("WATCHDOG"))
        .take(6)
    {
        eprintln!("  {:>6} ms  {}", t.as_millis(), m.replace('\n', " "));
    }
    eprintln!("  ... {} WATCHDOG=1 pings", pings.len());
}

/// Reads datagrams for `d`, returning their texts.
fn drain(sock: &UnixDatagram, d: Duration) -> Vec<String> {
    let end = Instant::now() + d;
    let mut buf = [0u8; 4096];
    let mut out = Vec::new();
    while Instant::now() < end {
        if let Ok(n) = sock.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    out
}

#[test]
fn a_hung_worker_is_replaced_once_then_the_watchdog_pings_stop() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let http = common::free_port();
    // The faulty engine hangs on cyan frames; everything else runs.
    let (sock, mut daemon) = start_under_systemd(
        dir.path(),
        &broker,
        "workers = 1",
        &format!("[supervise]\ninfer_timeout_s = 2\n[telemetry]\nlisten = \"127.0.0.1:{http}\"\n"),
        &common::faulty_bin(),
    );
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let healthy = drain(&sock, Duration::from_secs(2));
    assert_eq!(common::http_get(http, "/healthz").0, 200);
    assert!(
        healthy.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 3,
        "pings while healthy: {healthy:?}"
    );

    // The first hang: the worker is abandoned and a fresh one takes its
    // place; the watchdog keeps being pinged.
    let img = common::cyan(320, 96);
    common::save(&img, &dir.path().join("inbox/hang1.png"));
    daemon.wait_log("stage infer-0 hung for", Duration::from_secs(20));
    daemon.wait_log("restarted in place", Duration::from_secs(1));
    let replaced = drain(&sock, Duration::from_secs(2));
    assert!(
        replaced.iter().filter(|m| m.contains("WATCHDOG=1")).count() >= 2,
        "pings go on once the hung worker is replaced: {replaced:?}"
    );
    assert_eq!(common::http_get(http, "/healthz").0, 200);
    let metrics = common::http_get(http, "/metrics").1;
    assert_eq!(
        common::metric(
            &metrics,
            "edgewatch_stage_restarts_total{stage=\"infer-0\"}"
        ),
        Some(1.0),
        "{metrics}"
    );

    // The second hang, while the first thread is still stuck: replacing it
    // again would grow memory past the plan, so the pings stop and systemd
    // restarts the process.
    common::save(&img, &dir.path().join("inbox/hang2.png"));
    daemon.wait_log("has not come back", Duration::from_secs(20));
    daemon.wait_log("stage(s) hung: infer-0", Duration::from_secs(5));
    drain(&sock, Duration::from_millis(700));
    let after = drain(&sock, Duration::from_secs(3));
    assert!(
        !after.iter().any(|m| m.contains("WATCHDOG=1")),
        "no watchdog ping while inference is hung: {after:?}"
    );

    let (code, body) = common::http_get(http, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("infer-0"), "names the hung stage: {body}");

    // A hung stage cannot hold the stop forever: exit non-zero, saying why.
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(30));
    assert!(!status.success(), "a hung stop is a failure");
    daemon.wait_log("did not stop", Duration::from_secs(1));
}
