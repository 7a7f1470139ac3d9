//! The V4L2 camera path run through its real calls (the `v4l` crate's open,
//! ioctls, mmap, poll, munmap and close) against a fake UVC camera
//! interposed with LD_PRELOAD (`tests/fake_v4l2/fake_v4l2.c`): these
//! machines have no /dev/video* and cannot load vivid or v4l2loopback.
//! The daemon publishes to a real mosquitto.

use crate::common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::fake_v4l2::{fds_and_rss, FakeDevice, FakeV4l2};
use common::textimg::render;
use common::{http_get, metric, Broker, Daemon, Subscriber};
use edgewatch::source::encode_frame;
use edgewatch::source::{without_huffman_tables, PixelFormat};
use edgewatch::source::{ReplayHeader, ReplayWriter};
use image::RgbImage;

/// Writes `frames` into a replay file at `fps`, each encoded as a camera
/// sends `format` (MJPEG without its Huffman tables).
fn write_replay(path: &Path, frames: &[RgbImage], fps: f64, format: PixelFormat) {
    let (width, height) = frames[0].dimensions();
    let mut w = ReplayWriter::create(
        path,
        ReplayHeader {
            format,
            width,
            height,
            fps: Some(fps),
        },
    )
    .unwrap();
    for (i, img) in frames.iter().enumerate() {
        let mut data = encode_frame(img, format);
        if format == PixelFormat::Mjpeg {
            data = without_huffman_tables(&data);
        }
        w.push_at(Duration::from_secs_f64(i as f64 / fps), &data)
            .unwrap();
    }
    w.finish().unwrap();
}

/// The boxes in hundredths of a pixel, to compare and hash exactly.
fn boxes(msg: &serde_json::Value) -> Vec<Vec<i64>> {
    common::boxes(msg)
        .iter()
        .map(|b| b.iter().map(|v| (v * 100.0).round() as i64).collect())
        .collect()
}

fn start(cfg: &Path, fake: &FakeV4l2) -> Daemon {
    let env = fake.env();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Daemon::start_with_env(cfg, &pairs)
}

#[test]
fn a_fake_uvc_camera_publishes_the_boxes_its_replay_does() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let stills: Vec<RgbImage> = (0..3u64)
        .map(|seed| render(640, 480, 900 + seed, 4, 22, 34).0)
        .collect();
    let yuyv = dir.path().join("yuyv.ewraw");
    let mjpeg = dir.path().join("mjpeg.ewraw");
    write_replay(&yuyv, &stills, 0.5, PixelFormat::Yuyv);
    write_replay(&mjpeg, &stills, 0.5, PixelFormat::Mjpeg);
    let mut fake = FakeV4l2::new(dir.path());
    // Rows padded as some drivers do; asked for 800x600, granted its 640x480.
    fake.add("/dev/video42", &yuyv, &["pad 96"]);
    // Lists YUYV too but grants its MJPEG whatever is asked.
    fake.add("/dev/video43", &mjpeg, &["offer YUYV"]);
    // tract: the boxes are compared exactly, and ONNX Runtime's thread
    // pool may split a reduction differently from run to run under load.
    let cfg = common::write_config(
        dir.path(),
        &broker,
        r#"backend = "cpu"
[[source]]
name = "cam_yuyv"
kind = "camera"
publish = ["frames"]
device = "/dev/video42"
width = 800
height = 600
[[source]]
name = "cam_mjpeg"
kind = "camera"
publish = ["frames"]
device = "/dev/video43"
format = "yuyv"
width = 640
height = 480
[[source]]
name = "rep_yuyv"
kind = "replay"
publish = ["frames"]
path = "yuyv.ewraw"
[[source]]
name = "rep_mjpeg"
kind = "replay"
publish = ["frames"]
path = "mjpeg.ewraw"
"#,
        "",
    );
    let mut daemon = start(&cfg, &fake);
    let by_source = |all: &[common::Received], source: &str| -> Vec<Vec<Vec<i64>>> {
        all.iter()
            .filter(|m| !m.retain && m.topic.ends_with("/detections"))
            .map(|m| m.json())
            .filter(|m| m["source"] == source)
            .map(|m| boxes(&m))
            .collect()
    };
    // Each camera must show all three frames, each as its replay saw it.
    let covered = |all: &[common::Received], cam: &str, rep: &str| {
        let want: HashSet<_> = by_source(all, rep).into_iter().collect();
        let got: HashSet<_> = by_source(all, cam).into_iter().collect();
        want.len() == 3 && got.len() >= 3
    };
    let all = sub.wait_until(
        Duration::from_secs(120),
        "every frame from both cameras and both replays",
        |all| covered(all, "cam_yuyv", "rep_yuyv") && covered(all, "cam_mjpeg", "rep_mjpeg"),
    );
    for (cam, rep) in [("cam_yuyv", "rep_yuyv"), ("cam_mjpeg", "rep_mjpeg")] {
        let want: HashSet<_> = by_source(&all, rep).into_iter().collect();
        assert!(
            want.iter().all(|b| !b.is_empty()),
            "{rep}: the frames have text"
        );
        for got in by_source(&all, cam) {
            assert!(
                want.contains(&got),
                "{cam} published boxes {got:?} that its replay never did: {want:?}"
            );
        }
    }
    let log = daemon.log().join("\n");
    assert!(
        log.contains("/dev/video42 streaming yuyv 640x480 at 0.5 fps"),
        "the granted size is used: {log}"
    );
    assert!(
        log.contains("/dev/video43 streaming mjpeg 640x480"),
        "the granted format is used: {log}"
    );
    daemon.stop_cleanly();
}

#[test]
fn edgewatch_cameras_lists_the_plugged_fake_devices() {
    let dir = tempfile::tempdir().unwrap();
    let frames = vec![RgbImage::new(320, 240); 2];
    let replay = dir.path().join("cam.ewraw");
    write_replay(&replay, &frames, 7.5, PixelFormat::Yuyv);
    let mut fake = FakeV4l2::new(dir.path());
    fake.add("/dev/video42", &replay, &["offer MJPG", "card Dock Camera"]);
    let gone = fake.add("/dev/video43", &replay, &[]);
    gone.control("unplug");
    let out = Command::new(common::bin())
        .arg("cameras")
        .envs(fake.env())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "/dev/video42\n",
        "  Dock Camera [uvcvideo, usb-0000:00:14.0-1]\n",
        "  YUYV YUYV 4:2:2\n",
        "    320x240 @ 7.5 fps\n",
        "  MJPG Motion-JPEG\n",
    ] {
        assert!(text.contains(want), "no {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("/dev/video43"),
        "an unplugged camera is not listed:\n{text}"
    );
}

/// A small camera, streaming fast, with the metrics endpoint on.
fn small_camera(dir: &Path, broker: &Broker, port: u16, extra_source: &str) -> std::path::PathBuf {
    common::write_config(
        dir,
        broker,
        &format!(
            "[[source]]\nname = \"cam\"\nkind = \"camera\"\npublish = [\"frames\"]\ndevice = \"/dev/video44\"\nwidth = 96\nheight = 64\nfps = 5\nframe_timeout_s = 1\nreconnect_max_s = 1\n{extra_source}"
        ),
        &format!("[telemetry]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
}

fn card_frames(n: u32) -> Vec<RgbImage> {
    (0..n)
        .map(|i| RgbImage::from_fn(96, 64, |x, y| image::Rgb([(i * 9) as u8, x as u8, y as u8])))
        .collect()
}

/// A fake camera at /dev/video44 streaming a 30 fps test card, and its replay.
fn card_camera(dir: &Path) -> (FakeV4l2, FakeDevice, PathBuf) {
    let replay = dir.join("cam.ewraw");
    write_replay(&replay, &card_frames(8), 30.0, PixelFormat::Yuyv);
    let mut fake = FakeV4l2::new(dir);
    let cam = fake.add("/dev/video44", &replay, &[]);
    (fake, cam, replay)
}

#[test]
fn a_hundred_unplugs_and_replugs_recover_without_leaking() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let (fake, cam, _) = card_camera(dir.path());
    let port = common::free_port();
    let cfg = small_camera(dir.path(), &broker, port, "");
    let mut daemon = start(&cfg, &fake);
    cam.wait_count("frames", 30, Duration::from_secs(60), "first frames");
    let cycles = std::env::var("CYCLES")
        .map(|v| v.parse().unwrap())
        .unwrap_or(100);
    let mut before = None;
    let started = Instant::now();
    for cycle in 0..cycles {
        if cycle == 5 {
            // Past the first cycles, which fill pools and caches once.
            before = Some(fds_and_rss(daemon.pid()));
        }
        let (opens_failed, streamons, frames) = (
            cam.count("failed_opens"),
            cam.count("streamons"),
            cam.count("frames"),
        );
        cam.control("unplug");
        // The daemon must notice (ENODEV) and find the node gone at least once.
        cam.wait_count(
            "failed_opens",
            opens_failed + 1,
            Duration::from_secs(10),
            "unplug noticed",
        );
        cam.control("plug");
        cam.wait_count(
            "streamons",
            streamons + 1,
            Duration::from_secs(10),
            "replug found",
        );
        cam.wait_count(
            "frames",
            frames + 3,
            Duration::from_secs(10),
            "frames after replug",
        );
    }
    let elapsed = started.elapsed();
    let (fds0, rss0) = before.unwrap();
    // Let the last reconnect settle, as the first measurement did.
    std::thread::sleep(Duration::from_millis(500));
    let (fds1, rss1) = fds_and_rss(daemon.pid());
    eprintln!(
        "{cycles} unplug/replug cycles in {:.1} s; fds {fds0} -> {fds1}; RSS {rss0} -> {rss1} KiB",
        elapsed.as_secs_f64()
    );
    assert_eq!(fds1, fds0, "file descriptors leak across replugs");
    assert!(
        rss1 <= rss0 + 2048,
        "RSS grew {} KiB over {} cycles",
        rss1 as i64 - rss0 as i64,
        cycles - 5
    );
    let (_, metrics) = http_get(port, "/metrics");
    let reconnects = metric(
        &metrics,
        "edgewatch_camera_reconnects_total{source=\"cam\"}",
    )
    .unwrap();
    assert_eq!(reconnects, cycles as f64, "each replug is one reconnect");
    assert!(daemon.alive());
    daemon.stop_cleanly();
}

#[test]
fn camera_faults_are_named_in_the_log_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let (mut fake, cam, replay) = card_camera(dir.path());
    // A driver that grants a format edgewatch cannot read.
    fake.add("/dev/video45", &replay, &["grant H264"]);
    let port = common::free_port();
    let cfg = small_camera(
        dir.path(),
        &broker,
        port,
        "[[source]]\nname = \"odd\"\nkind = \"camera\"\npublish = [\"frames\"]\ndevice = \"/dev/video45\"\nwidth = 96\nheight = 64\n",
    );
    let mut daemon = start(&cfg, &fake);
    cam.wait_count("frames", 10, Duration::from_secs(60), "first frames");
    daemon.wait_log(
        "camera odd: /dev/video45: granted H264 instead of yuyv",
        Duration::from_secs(10),
    );

    // EIO from DQBUF: a lost stream, reopened.
    let streamons = cam.count("streamons");
    cam.control("eio 1");
    cam.wait_count("eio", 1, Duration::from_secs(10), "EIO delivered");
    daemon.wait_log(
        "/dev/video44 lost: Input/output error",
        Duration::from_secs(10),
    );
    cam.wait_count(
        "streamons",
        streamons + 1,
        Duration::from_secs(10),
        "reopened after EIO",
    );
    let frames = cam.count("frames");
    cam.wait_count(
        "frames",
        frames + 5,
        Duration::from_secs(10),
        "frames after EIO",
    );

    // No frames at all: the frame timeout names it; frames resume after.
    cam.control("stall");
    daemon.wait_log(
        "/dev/video44 lost: no frame for 1 s",
        Duration::from_secs(10),
    );
    let frames = cam.count("frames");
    cam.control("plug");
    cam.wait_count(
        "frames",
        frames + 5,
        Duration::from_secs(10),
        "frames after a stall",
    );
    daemon.wait_log("/dev/video44 back after", Duration::from_secs(10));

    let (_, metrics) = http_get(port, "/metrics");
    let inferred = metric(
        &metrics,
        "edgewatch_camera_frames_total{source=\"cam\",outcome=\"inferred\"}",
    )
    .unwrap();
    assert!(inferred > 0.0, "{metrics}");
    assert!(daemon.alive(), "a bad camera never takes the daemon down");
    daemon.stop_cleanly();
}
