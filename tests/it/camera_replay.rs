//! A replay file, made by `edgewatch record --images`, drives the daemon to a
//! real mosquitto through the camera path (conversion, pacing, latest-frame
//! hand-over): the messages carry what `edgewatch detect` finds in the same
//! still images.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::textimg::render;
use common::{Broker, Daemon, Subscriber};

fn record(images: &[PathBuf], format: &str, out: &Path) {
    let status = Command::new(common::bin())
        .arg("record")
        .arg("--images")
        .args(images)
        .args(["--format", format, "--fps", "0.5", "--out"])
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "edgewatch record failed");
}

#[test]
fn replayed_frames_are_published_like_detect_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let mut images = Vec::new();
    for seed in 0..3u64 {
        let (img, _) = render(640, 480, 900 + seed, 4, 22, 34);
        let p = dir.path().join(format!("still{seed}.png"));
        common::save(&img, &p);
        images.push(p);
    }
    // RGB3 is lossless, so frames are exactly the stills; YUYV (chroma
    // shared by pixel pairs) may move a box edge by a pixel.
    record(&images, "rgb3", &dir.path().join("rgb.ewraw"));
    record(&images, "yuyv", &dir.path().join("yuyv.ewraw"));
    let cfg = dir.path().join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"device = "bench"
[model]
path = {model:?}
[[source]]
name = "rgb"
kind = "replay"
publish = ["frames"]
path = "rgb.ewraw"
[[source]]
name = "yuyv"
kind = "replay"
publish = ["frames"]
path = "yuyv.ewraw"
[mqtt]
url = "{url}"
outbox = "outbox"
"#,
            model = common::model_path().display().to_string(),
            url = broker.url()
        ),
    )
    .unwrap();
    let want = common::detect(&cfg, &images);
    assert!(
        want.iter().all(|m| !common::boxes(m).is_empty()),
        "the stills have text"
    );

    let mut daemon = Daemon::start(&cfg);
    let got = sub.wait_until(
        Duration::from_secs(90),
        "3 frames from each replay",
        |all| {
            all.iter()
                .filter(|m| !m.retain && m.topic.ends_with("/detections"))
                .count()
                >= 6
        },
    );
    daemon.wait_log("rgb.ewraw ended after 3 frame(s)", Duration::from_secs(30));
    daemon.wait_log("yuyv.ewraw ended after 3 frame(s)", Duration::from_secs(30));
    let frames = |source: &str| {
        let mut msgs: Vec<serde_json::Value> = got
            .iter()
            .filter(|m| !m.retain && m.topic.ends_with("/detections"))
            .map(|m| m.json())
            .filter(|m| m["source"] == source)
            .collect();
        msgs.sort_by_key(|m| m["seq"].as_u64());
        msgs
    };
    let rgb = frames("rgb");
    assert_eq!(rgb.len(), 3, "every frame of a slow replay is inferred");
    for (msg, still) in rgb.iter().zip(&want) {
        assert_eq!(msg["image"]["width"], 640);
        assert!(
            msg["image"].get("path").is_none(),
            "camera frames have no file"
        );
        assert_eq!(
            common::boxes(msg),
            common::boxes(still),
            "frame {} differs from detect",
            msg["seq"]
        );
    }
    let yuyv = frames("yuyv");
    assert_eq!(yuyv.len(), 3);
    for (msg, still) in yuyv.iter().zip(&want) {
        let (a, b) = (common::boxes(msg), common::boxes(still));
        assert_eq!(a.len(), b.len(), "frame {}: {a:?} vs {b:?}", msg["seq"]);
        for (x, y) in a.iter().zip(&b) {
            let off = x
                .iter()
                .zip(y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max);
            assert!(off <= 3.0, "frame {}: box {x:?} vs {y:?}", msg["seq"]);
        }
    }
    // A replay that ended is not a hung stage: the daemon stays healthy and
    // stops cleanly.
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.alive());
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}

#[test]
fn record_refuses_mixed_sizes_and_bad_formats() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.png");
    let b = dir.path().join("b.png");
    common::save(&image::RgbImage::new(64, 48), &a);
    common::save(&image::RgbImage::new(32, 48), &b);
    let out = Command::new(common::bin())
        .args(["record", "--images"])
        .args([&a, &b])
        .arg("--out")
        .arg(dir.path().join("x.ewraw"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("32x48") && err.contains("64x48"), "{err}");
    let out = Command::new(common::bin())
        .args(["record", "--format", "h264", "--images"])
        .arg(&a)
        .arg("--out")
        .arg(dir.path().join("x.ewraw"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("h264"));
}
