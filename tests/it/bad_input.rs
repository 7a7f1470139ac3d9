//! Inputs an operator's worst week brings, each refused on one line: a FIFO,
//! a 3-byte JPEG, a 2 KB JPEG declaring 20000×20000, a model that is not a
//! model, a source folder under a regular file; and file names the inbox
//! must still handle (not UTF-8, 255 bytes).

use crate::common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{Broker, Daemon, Subscriber};
use image::RgbImage;

fn detect(cfg: &Path, images: &[&Path]) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.args(["detect", "--config"]).arg(cfg).args(images);
    // A FIFO must not block the command: it is given a deadline here.
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("detect did not finish within 60 s (blocked on a FIFO?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn config(dir: &Path, model: &Path, extra: &str) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n{extra}",
            model.display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// A daemon's surroundings: a folder source `dock` on `inbox/`, a broker
/// and a subscriber; `extra` adds config sections.
struct FolderRig {
    dir: tempfile::TempDir,
    broker: Broker,
    sub: Subscriber,
    cfg: PathBuf,
    inbox: PathBuf,
}

impl FolderRig {
    fn new(extra: &str) -> FolderRig {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start();
        let sub = Subscriber::connect(broker.port, "edgewatch/#");
        let cfg = config(
            dir.path(),
            &common::test_model("db-bright.onnx"),
            &format!(
                "{extra}[[source]]\nname = \"dock\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 50\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n",
                broker.url()
            ),
        );
        let inbox = dir.path().join("inbox");
        std::fs::create_dir_all(&inbox).unwrap();
        FolderRig {
            dir,
            broker,
            sub,
            cfg,
            inbox,
        }
    }
}

/// A baseline JPEG whose SOF0 header is rewritten to declare `w`×`h`.
fn lying_jpeg(path: &Path, w: u16, h: u16) {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 80)
        .encode_image(&RgbImage::new(16, 16))
        .unwrap();
    let sof = bytes
        .windows(2)
        .position(|m| m == [0xFF, 0xC0])
        .expect("a baseline SOF0 marker");
    // FFC0, length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn bad_files_each_fail_on_one_line_and_nothing_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &common::test_model("db-bright.onnx"), "");
    let fifo = dir.path().join("camera.fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    let soi = dir.path().join("three-bytes.jpg");
    std::fs::write(&soi, [0xFF, 0xD8, 0xFF]).unwrap();
    let bomb = dir.path().join("bomb.jpg");
    lying_jpeg(&bomb, 20000, 20000);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 2048);
    let good = dir.path().join("good.png");
    common::save(&RgbImage::new(64, 64), &good);
    let started = Instant::now();
    let out = detect(&cfg, &[&fifo, &soi, &bomb, &good]);
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("edgewatch: "))
        .collect();
    assert_eq!(lines.len(), 3, "one line per bad file: {stderr}");
    assert!(
        lines[0].contains("camera.fifo") && lines[0].contains("not a regular file"),
        "{stderr}"
    );
    assert!(
        lines[1].contains("three-bytes.jpg") && lines[1].contains("(stage decode)"),
        "{stderr}"
    );
    assert!(
        lines[2].contains("bomb.jpg") && lines[2].contains("max_pixels_per_byte"),
        "{stderr}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "the good file is printed"
    );
    // The bomb is refused from its header, not decoded (which took 13.6 s).
    assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    // The limit is the operator's key: zero is refused, naming it.
    let cfg = dir.path().join("zero.toml");
    std::fs::write(
        &cfg,
        format!(
            "max_pixels_per_byte = 0\n[model]\npath = {:?}\n",
            common::test_model("db-bright.onnx").display().to_string()
        ),
    )
    .unwrap();
    let out = detect(&cfg, &[&good]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key `max_pixels_per_byte`"));
}

#[test]
fn a_model_that_is_not_a_model_and_a_folder_under_a_file_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("model.onnx");
    std::fs::write(&text, "this is not an ONNX file\n").unwrap();
    let truncated = dir.path().join("truncated.onnx");
    let real = std::fs::read(common::test_model("classify-colors.onnx")).unwrap();
    std::fs::write(&truncated, &real[..real.len() / 2]).unwrap();
    for model in [&text, &truncated] {
        let cfg = config(dir.path(), model, "");
        let out = Command::new(common::bin())
            .arg("check-config")
            .arg(&cfg)
            .arg("--detect")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", model.display());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.starts_with("config error: "))
            .unwrap_or_else(|| panic!("no config error line: {stderr}"));
        assert!(line.contains("key `model.path`"), "{line}");
        assert!(line.contains(&cfg.display().to_string()), "{line}");
    }
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "x").unwrap();
    let cfg = config(
        dir.path(),
        &common::test_model("db-bright.onnx"),
        &format!(
            "[[source]]\nname = \"dock\"\nkind = \"folder\"\npath = {:?}\n",
            plain.join("inbox").display().to_string()
        ),
    );
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(&cfg)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
}

#[test]
fn odd_names_in_the_inbox_are_processed_and_their_failures_recorded() {
    let FolderRig {
        dir,
        broker: _broker,
        sub,
        cfg,
        inbox,
    } = FolderRig::new("");
    let daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    // Latin-1 bytes, as an old camera's firmware names files.
    let latin1 = OsStr::from_bytes(b"caf\xe9-\xb5m.png").to_os_string();
    let staged = dir.path().join("staged.png");
    common::save(&RgbImage::new(64, 64), &staged);
    std::fs::rename(&staged, inbox.join(&latin1)).unwrap();
    // A 255-byte name that is not an image: failed/, with its record.
    let long = format!("{}.jpg", "n".repeat(251));
    assert_eq!(long.len(), 255);
    std::fs::write(dir.path().join("staged.jpg"), [0xFF, 0xD8, 0xFF]).unwrap();
    std::fs::rename(dir.path().join("staged.jpg"), inbox.join(&long)).unwrap();
    let done = dir.path().join("done");
    let failed = dir.path().join("failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(done.join(&latin1).exists() && failed.join(&long).exists()) {
        assert!(
            Instant::now() < deadline,
            "log:\n{}",
            daemon.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = sub.wait_until(Duration::from_secs(30), "one message", |all| {
        all.iter().any(|m| m.topic.ends_with("/detections"))
    });
    let msg = got
        .iter()
        .find(|m| m.topic.ends_with("/detections"))
        .unwrap()
        .json();
    assert!(
        msg["image"]["path"]
            .as_str()
            .unwrap()
            .ends_with("caf\u{FFFD}-\u{FFFD}m.png"),
        "the message carries a lossy name: {msg}"
    );
    let records: Vec<PathBuf> = std::fs::read_dir(&failed)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".error.json"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].file_name().unwrap().len() <= 255);
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&records[0]).unwrap()).unwrap();
    assert!(
        record["file"].as_str().unwrap().ends_with(&long),
        "{record}"
    );
    let reason = record["error"].as_str().unwrap();
    assert!(!reason.contains('\n'), "{reason:?}");
    assert!(
        !daemon
            .log()
            .iter()
            .any(|l| l.contains("cannot move it to failed")),
        "{}",
        daemon.log().join("\n")
    );
}

#[test]
fn a_file_that_panics_the_worker_costs_that_file_only() {
    // One restart allowed: if panics counted as stage failures, the third
    // would stop the daemon.
    let FolderRig {
        dir,
        broker: _broker,
        sub,
        cfg,
        inbox,
    } = FolderRig::new("[supervise]\nmax_restarts = 1\n");
    // Panicking files first, so good ones queue behind them.
    let names: Vec<String> = (0..4)
        .map(|i| format!("boom-{i}.png"))
        .chain((0..3).map(|i| format!("good-{i}.png")))
        .collect();
    // The faulty engine panics on magenta frames; the good ones are black.
    for name in &names {
        let img = if name.starts_with("boom") {
            common::magenta(64, 64)
        } else {
            RgbImage::new(64, 64)
        };
        common::save(&img, &inbox.join(name));
    }
    let mut daemon = Daemon::start_binary(&common::faulty_bin(), &cfg, &[]);
    let (done, failed) = (dir.path().join("done"), dir.path().join("failed"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !names.iter().all(|n| {
        let dest = if n.starts_with("boom") {
            &failed
        } else {
            &done
        };
        dest.join(n).exists()
    }) {
        assert!(
            Instant::now() < deadline,
            "log:\n{}",
            daemon.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..4 {
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(failed.join(format!("boom-{i}.png.error.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(record["stage"], "panic", "{record}");
        let reason = record["error"].as_str().unwrap();
        assert!(
            reason.contains("panicked") && reason.contains("faulty engine: a magenta frame"),
            "{reason}"
        );
    }
    sub.wait_until(Duration::from_secs(30), "3 messages", |all| {
        all.iter()
            .filter(|m| m.topic.ends_with("/detections"))
            .count()
            >= 3
    });
    assert!(daemon.alive(), "log:\n{}", daemon.log().join("\n"));
    assert!(
        !daemon.log().iter().any(|l| l.contains("restarting it in")),
        "a panic is not a stage restart: {}",
        daemon.log().join("\n")
    );
    assert!(std::fs::read_dir(inbox.join(".processing"))
        .unwrap()
        .next()
        .is_none());
    // A restart does not replay them: each is in failed/ once, with its record.
    drop(daemon);
    let daemon = Daemon::start_binary(&common::faulty_bin(), &cfg, &[]);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let mut in_failed: Vec<String> = std::fs::read_dir(&failed)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    in_failed.sort();
    let want: Vec<String> = (0..4)
        .flat_map(|i| [format!("boom-{i}.png"), format!("boom-{i}.png.error.json")])
        .collect();
    assert_eq!(in_failed, want);
    assert!(
        !daemon.log().iter().any(|l| l.contains("panicked")),
        "{}",
        daemon.log().join("\n")
    );
}
