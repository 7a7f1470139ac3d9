//! Nothing lost when the outbox's disk fills, or when a name comes twice:
//! the real daemon, a real mosquitto, and the outbox on a real 1 MiB tmpfs
//! (mounted here; the tests run as root, as CI does) that is filled to the
//! last byte while images keep arriving.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http_get, metric, Broker, Daemon, Subscriber};
use image::{Rgb, RgbImage};

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} ({}); these tests need root, as CI runs them",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes a filler file until the disk refuses more.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 4096];
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                    break;
                }
            }
        }
        // Byte-sized writes take the last partial page too.
        while f.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A frame whose size tells which file it was.
fn frame(dir: &Path, name: &str, side: u32) -> PathBuf {
    let mut img = RgbImage::new(side, side);
    for y in side / 4..side / 2 {
        for x in side / 4..3 * side / 4 {
            img.put_pixel(x, y, Rgb([255, 255, 255]));
        }
    }
    let staged = dir.join(format!("staged-{name}.png"));
    common::save(&img, &staged);
    staged
}

fn drop_in(inbox: &Path, staged: &Path, name: &str) {
    std::fs::rename(staged, inbox.join(name)).unwrap();
}

fn config(dir: &Path, outbox: &Path, broker: &Broker, port: u16) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n[[source]]\nname = \"dock\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 50\n[mqtt]\nurl = \"{}\"\noutbox = {:?}\n[telemetry]\nlisten = \"127.0.0.1:{port}\"\n",
            common::test_model("db-bright.onnx").display().to_string(),
            broker.url(),
            outbox.display().to_string(),
        ),
    )
    .unwrap();
    cfg
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon on a folder, its outbox on a 1 MiB tmpfs, a broker and a
/// subscriber.
struct Rig {
    daemon: Daemon,
    sub: Subscriber,
    _broker: Broker,
    cfg: PathBuf,
    port: u16,
    disk: SmallDisk,
    dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let disk = SmallDisk::mount(&dir.path().join("outbox-fs"), "1m");
        let broker = Broker::start();
        let sub = Subscriber::connect(broker.port, "edgewatch/#");
        let port = common::free_port();
        let cfg = config(dir.path(), &disk.dir.join("outbox"), &broker, port);
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        let daemon = Daemon::start(&cfg);
        daemon.wait_log("edgewatch ready", Duration::from_secs(60));
        Rig {
            daemon,
            sub,
            _broker: broker,
            cfg,
            port,
            disk,
            dir,
        }
    }
}

#[test]
fn a_full_outbox_disk_loses_nothing_and_folders_resume_without_a_restart() {
    // Bound in this order so they drop in reverse: the daemon first, the disk last but one.
    let Rig {
        dir,
        disk,
        port,
        cfg,
        _broker,
        sub,
        daemon,
    } = Rig::start();
    let (inbox, done) = (dir.path().join("inbox"), dir.path().join("done"));

    let drop_batch = |from: usize, to: usize| {
        for i in from..to {
            let name = format!("img-{i:02}.png");
            let staged = frame(dir.path(), &name, 64);
            drop_in(&inbox, &staged, &name);
        }
    };
    drop_batch(0, 5);
    wait_for("5 files done", Duration::from_secs(60), || {
        names_in(&done).len() == 5
    });

    // The disk fills; ten more arrive.
    let filler = disk.fill();
    drop_batch(5, 15);
    wait_for(
        "/healthz to report the outbox",
        Duration::from_secs(30),
        || {
            let (code, text) = http_get(port, "/healthz");
            code == 503 && text.contains("outbox cannot write")
        },
    );
    // What was already written before the last free bytes went (the
    // segment's partly used page) may finish; nothing more does.
    let stuck = names_in(&done).len();
    assert!(stuck < 8, "{stuck} done on a full disk");
    std::thread::sleep(Duration::from_secs(2));
    let (_, metrics) = http_get(port, "/metrics");
    assert_eq!(
        metric(&metrics, "edgewatch_outbox_write_failing"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        names_in(&done).len(),
        stuck,
        "nothing counts as done while it cannot be kept"
    );
    let waiting = names_in(&inbox).len() + names_in(&inbox.join(".processing")).len();
    assert_eq!(waiting, 15 - stuck, "the rest wait in the inbox or queued");

    // Space comes back: everything moves on by itself, and ten more follow.
    std::fs::remove_file(&filler).unwrap();
    drop_batch(15, 25);
    wait_for("25 files done", Duration::from_secs(90), || {
        names_in(&done).len() == 25
    });
    wait_for("/healthz ok again", Duration::from_secs(10), || {
        http_get(port, "/healthz") == (200, "ok\n".to_string())
    });
    let by_file = sub.wait_until(Duration::from_secs(30), "25 messages", |all| {
        all.iter()
            .filter(|m| m.topic.ends_with("/detections"))
            .count()
            >= 25
    });
    drop(by_file);
    std::thread::sleep(Duration::from_millis(500));
    let by_file = common::detections_by_file(&sub);
    for name in names_in(&done) {
        let got = by_file.get(&name).map(Vec::len).unwrap_or(0);
        assert_eq!(
            got,
            1,
            "{name}: {got} message(s); all: {:?}",
            by_file.keys()
        );
        assert_eq!(by_file[&name][0]["image"]["width"], 64);
    }
    assert_eq!(by_file.len(), 25);
    assert!(
        daemon
            .log()
            .iter()
            .any(|l| l.contains("writing again after")),
        "the recovery is logged"
    );
    drop(daemon);
    // The segments hold nothing torn: a restart cuts and skips nothing.
    let daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let log = daemon.log().join("\n");
    assert!(!log.contains("torn"), "{log}");
    assert!(!log.contains("damaged"), "{log}");
}

#[test]
fn a_name_that_comes_again_while_queued_waits_and_neither_file_is_lost() {
    // Bound in this order so they drop in reverse: the daemon first, the disk last but one.
    let Rig {
        dir,
        disk,
        port: _,
        cfg: _,
        _broker,
        sub,
        daemon,
    } = Rig::start();
    let (inbox, done) = (dir.path().join("inbox"), dir.path().join("done"));

    // A full disk holds the first `a.png` queued in .processing ...
    let filler = disk.fill();
    let first = frame(dir.path(), "first", 64);
    let first_bytes = std::fs::read(&first).unwrap();
    drop_in(&inbox, &first, "a.png");
    wait_for("a.png claimed", Duration::from_secs(30), || {
        inbox.join(".processing/a.png").exists()
    });
    // ... while a second `a.png` arrives.
    let second = frame(dir.path(), "second", 96);
    let second_bytes = std::fs::read(&second).unwrap();
    drop_in(&inbox, &second, "a.png");
    daemon.wait_log(
        "a file of the same name is still queued",
        Duration::from_secs(30),
    );
    assert_eq!(
        std::fs::read(inbox.join(".processing/a.png")).unwrap(),
        first_bytes,
        "the queued file was not overwritten"
    );
    std::fs::remove_file(&filler).unwrap();
    wait_for("both done", Duration::from_secs(60), || {
        names_in(&done).len() == 2
    });
    assert_eq!(std::fs::read(done.join("a.png")).unwrap(), first_bytes);
    assert_eq!(std::fs::read(done.join("a.1.png")).unwrap(), second_bytes);
    sub.wait_until(Duration::from_secs(30), "2 messages", |all| {
        all.iter()
            .filter(|m| m.topic.ends_with("/detections"))
            .count()
            >= 2
    });
    let msgs = &common::detections_by_file(&sub)["a.png"];
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    let mut widths: Vec<u64> = msgs
        .iter()
        .map(|m| m["image"]["width"].as_u64().unwrap())
        .collect();
    widths.sort();
    assert_eq!(
        widths,
        [64, 96],
        "each message carries its own file's content"
    );
    assert_ne!(msgs[0]["id"], msgs[1]["id"]);
    assert!(names_in(&dir.path().join("failed")).is_empty());
}
