//! Under systemd, logs go to journald with structured fields. The test plays
//! journald: a unix datagram socket at journald's path (created when the
//! machine has no journald, as CI containers do), and `JOURNAL_STREAM` naming
//! the file the daemon's stderr is.

use crate::common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::textimg::render;
use common::Broker;

const SOCKET: &str = "/run/systemd/journal/socket";

/// Journal entries from the native protocol: `FIELD=value\n`, or
/// `FIELD\n` + 64-bit little-endian length + bytes + `\n`.
fn entries(raw: &[Vec<u8>]) -> Vec<std::collections::HashMap<String, String>> {
    raw.iter()
        .map(|d| {
            let mut fields = std::collections::HashMap::new();
            let mut i = 0;
            while i < d.len() {
                let Some(end) = d[i..].iter().position(|b| *b == b'=' || *b == b'\n') else {
                    break;
                };
                let name = String::from_utf8_lossy(&d[i..i + end]).into_owned();
                i += end;
                let value = if d[i] == b'=' {
                    let stop = d[i + 1..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .unwrap_or(d.len() - i - 1);
                    let v = &d[i + 1..i + 1 + stop];
                    i += stop + 2;
                    v
                } else {
                    let len = u64::from_le_bytes(d[i + 1..i + 9].try_into().unwrap()) as usize;
                    let v = &d[i + 9..i + 9 + len];
                    i += 9 + len + 1;
                    v
                };
                fields.insert(name, String::from_utf8_lossy(value).into_owned());
            }
            fields
        })
        .collect()
}

#[test]
fn logs_reach_the_journal_with_source_stage_and_frame_fields() {
    // A socket file left by an interrupted run has no listener: take it back.
    if Path::new(SOCKET).exists()
        && UnixDatagram::unbound()
            .and_then(|s| s.connect(SOCKET))
            .is_err()
    {
        let _ = std::fs::remove_file(SOCKET);
    }
    if Path::new(SOCKET).exists() {
        // A real journald owns the path; never take it over. The journal
        // itself is then checked with journalctl below.
        eprintln!("journald is running here; reading back through journalctl");
    }
    let ours = !Path::new(SOCKET).exists();
    let received = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    if ours {
        std::fs::create_dir_all("/run/systemd/journal").expect("run as root (CI does)");
        let sock = UnixDatagram::bind(SOCKET).unwrap();
        let sink = received.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = sock.recv(&mut buf) {
                sink.lock().unwrap().push(buf[..n].to_vec());
            }
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let cfg = dir.path().join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n[[source]]\nname = \"in\"\nkind = \"folder\"\n\
             path = \"inbox\"\nsettle_ms = 100\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n",
            common::model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let (img, _) = render(640, 360, 3, 3, 24, 30);
    common::save(&img, &inbox.join("good.jpg"));
    std::fs::write(inbox.join("bad.jpg"), b"not a jpeg").unwrap();

    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut child = Command::new(common::bin())
        .args(["run", "--config"])
        .arg(&cfg)
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdout(Stdio::null())
        .stderr(Stdio::from(stderr))
        .spawn()
        .unwrap();
    let done = dir.path().join("done/good.jpg");
    let failed = dir.path().join("failed/bad.jpg");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !(done.exists() && failed.exists()) {
        assert!(Instant::now() < deadline, "frames were not processed");
        std::thread::sleep(Duration::from_millis(100));
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");

    let raw: Vec<Vec<u8>> = if ours {
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_file(SOCKET);
        received.lock().unwrap().clone()
    } else {
        let out = Command::new("journalctl")
            .args(["-o", "export", "--no-pager"])
            .arg(format!("_PID={}", child.id()))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split("\n\n")
            .map(|e| e.as_bytes().to_vec())
            .collect()
    };
    let entries = entries(&raw);
    let with = |key: &str, val: &str| {
        entries
            .iter()
            .find(|e| e.get(key).is_some_and(|v| v.contains(val)))
            .cloned()
    };
    assert!(
        with("MESSAGE", "edgewatch ready").is_some(),
        "no ready line among {} entries: {:?}",
        entries.len(),
        raw.iter()
            .map(|r| String::from_utf8_lossy(r).into_owned())
            .collect::<Vec<_>>()
    );
    let good = with("MESSAGE", "good.jpg: ").expect("an entry for good.jpg");
    assert_eq!(
        good.get("SOURCE").map(String::as_str),
        Some("in"),
        "{good:?}"
    );
    assert!(
        good.get("FRAME_ID").is_some_and(|id| id.starts_with("in-")),
        "{good:?}"
    );
    assert_eq!(
        good.get("PRIORITY").map(String::as_str),
        Some("6"),
        "{good:?}"
    );
    assert_eq!(
        good.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("edgewatch")
    );
    let bad = with("MESSAGE", "bad.jpg: ").expect("an entry for bad.jpg");
    assert_eq!(
        bad.get("STAGE").map(String::as_str),
        Some("decode"),
        "{bad:?}"
    );
    assert_eq!(
        bad.get("PRIORITY").map(String::as_str),
        Some("4"),
        "{bad:?}"
    );
    // Nothing was written twice: stderr stayed quiet.
    let text = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(!text.contains("edgewatch ready"), "{text}");
}
