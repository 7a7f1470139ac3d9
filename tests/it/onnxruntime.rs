//! The ONNX Runtime backend (`model.backend = "onnxruntime"`) against tract
//! on the same frames, its fallback to tract, and the daemon on it: the real
//! library (`engines/fetch-onnxruntime.sh`), the real model, mosquitto.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::textimg::{iou, recall, render, render_busy, TextBox};
use common::{Broker, Daemon, Subscriber};
use edgewatch::config::{Config, Purpose};
use edgewatch::infer::onnxruntime::{self, OrtModel};
use edgewatch::infer::Detector;
use edgewatch::infer::LoadedModel;
use edgewatch::infer::{Engine, EngineFactory, TensorBatch};
use edgewatch::infer::{TilingConfig, TilingMode};
use edgewatch::runtime::detector_settings;

/// The library `engines/fetch-onnxruntime.sh` installs beside the model.
fn library() -> PathBuf {
    let p = common::model_path()
        .parent()
        .unwrap()
        .join("onnxruntime/libonnxruntime.so");
    assert!(
        p.exists(),
        "{} is missing; fetch it with engines/fetch-onnxruntime.sh (bash .ci/run does this)",
        p.display()
    );
    p
}

/// Tract and ONNX Runtime detectors with the same settings.
fn detectors(tiling: TilingConfig) -> (Detector, Detector) {
    let toml = format!("[model]\npath = {:?}\nworkers = 1\n", common::model_path());
    let mut config = Config::from_toml(&toml, Path::new("."), Purpose::Detect).unwrap();
    config.tiling = tiling;
    let t = config.tiling.tile as usize;
    let model = LoadedModel::load(&config.model, [1, 3, t, t]).unwrap();
    let settings = detector_settings(&config, 40_000_000, &model).unwrap();
    let ort = OrtModel::load(
        onnxruntime::open(&library()).unwrap(),
        &config.model.path,
        model.tract.input_spec().clone(),
        2,
    )
    .unwrap();
    (
        Detector::new(Box::new(model.tract.engine().unwrap()), settings.clone()),
        Detector::new(ort.engine().unwrap(), settings),
    )
}

fn boxes(det: &mut Detector, img: &image::RgbImage) -> Vec<[f32; 4]> {
    det.detect_rgb(img.clone())
        .unwrap()
        .detections
        .iter()
        .map(|d| d.bbox)
        .collect()
}

/// PP-OCR's input for `img`: BGR, (v/255 - 0.5) / 0.5, NCHW.
fn tensor(img: &image::RgbImage) -> TensorBatch {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            data[c * w * h + y as usize * w + x as usize] = p[2 - c] as f32 / 127.5 - 1.0;
        }
    }
    TensorBatch {
        shape: [1, 3, h, w],
        data,
    }
}

#[test]
fn onnxruntime_gives_tracts_probability_map_on_the_same_input() {
    let (img, _) = render(960, 544, 8100, 6, 14, 40);
    let toml = format!("[model]\npath = {:?}\n", common::model_path());
    let config = Config::from_toml(&toml, Path::new("."), Purpose::Detect).unwrap();
    let model = LoadedModel::load(&config.model, [1, 3, 544, 960]).unwrap();
    let ort = OrtModel::load(
        onnxruntime::open(&library()).unwrap(),
        &config.model.path,
        model.tract.input_spec().clone(),
        1,
    )
    .unwrap();
    let a = model.tract.engine().unwrap().run(tensor(&img)).unwrap();
    let b = ort.engine().unwrap().run(tensor(&img)).unwrap();
    assert_eq!(a.shape, vec![1, 1, 544, 960]);
    assert_eq!(a.shape, b.shape);
    let worst = a
        .data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let text = a.data.iter().filter(|v| **v > 0.3).count();
    eprintln!(
        "max |tract - onnxruntime| = {worst:.2e} over {} values ({text} above 0.3)",
        a.data.len()
    );
    assert!(
        text > 10_000,
        "the frame's text should light the map: {text}"
    );
    assert!(worst < 1e-3, "the maps differ by up to {worst}");
}

#[test]
fn onnxruntime_and_tract_find_the_same_boxes_whole_tiled_and_guided() {
    let cases: Vec<(&str, TilingConfig, image::RgbImage, Vec<TextBox>)> = vec![
        {
            let (img, truth) = render(1920, 1080, 8200, 8, 18, 48);
            ("1080p whole frame", TilingConfig::default(), img, truth)
        },
        {
            let (img, truth) = render(3840, 2160, 8300, 40, 12, 20);
            ("4K tiles", TilingConfig::default(), img, truth)
        },
        {
            let (img, truth) = render_busy(3840, 2160, 8400, 3, 12, 20);
            let guided = TilingConfig {
                mode: TilingMode::Guided,
                ..TilingConfig::default()
            };
            ("4K labels, guided", guided, img, truth)
        },
    ];
    for (what, tiling, img, truth) in cases {
        let (mut tract, mut ort) = detectors(tiling);
        let a = boxes(&mut tract, &img);
        let b = boxes(&mut ort, &img);
        let (ra, rb) = (recall(&truth, &a, 0.3), recall(&truth, &b, 0.3));
        eprintln!(
            "{what}: tract {} boxes (recall {ra:.3}), onnxruntime {} (recall {rb:.3})",
            a.len(),
            b.len()
        );
        assert_eq!(a.len(), b.len(), "{what}: box counts differ");
        for bb in &b {
            let best = a.iter().map(|aa| iou(*aa, *bb)).fold(0f32, f32::max);
            assert!(
                best >= 0.9,
                "{what}: onnxruntime's {bb:?} matches no tract box (best IoU {best:.2})"
            );
        }
        assert!(
            rb >= 0.95 && rb >= ra - 0.02,
            "{what}: recall {rb:.3} (tract {ra:.3})"
        );
    }
}

/// `top` (top-level keys), `[model]` on ONNX Runtime with `model_extra`,
/// then `rest` (other sections).
fn write_config(dir: &Path, top: &str, model_extra: &str, rest: &str) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "{top}\n[model]\npath = {:?}\nbackend = \"onnxruntime\"\n{model_extra}\n{rest}",
            common::model_path()
        ),
    )
    .unwrap();
    cfg
}

fn detect_cmd(cfg: &Path, images: &[PathBuf]) -> std::process::Output {
    Command::new(common::bin())
        .args(["detect", "--config"])
        .arg(cfg)
        .args(images)
        .env_remove("ORT_DYLIB_PATH")
        .env("RUST_LOG", "info")
        .output()
        .unwrap()
}

#[test]
fn detect_finds_the_library_beside_the_model_or_serves_on_tract_and_says_why_once() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let (img, truth) = render(1920, 1080, 8500, 8, 20, 40);
    let image = dir.path().join("frame.jpg");
    common::save(&img, &image);

    // Found beside the model (engines/onnxruntime/), as fetch-onnxruntime.sh leaves it.
    let cfg = write_config(dir.path(), "", "", "");
    let out = detect_cmd(&cfg, std::slice::from_ref(&image));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("ONNX Runtime 1."), "{err}");
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(msg["model"]["backend"], "onnxruntime-cpu", "{msg}");
    let found: Vec<[f32; 4]> = common::boxes(&msg)
        .iter()
        .map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
        .collect();
    assert!(recall(&truth, &found, 0.3) >= 0.95, "{msg}");

    // A file that is not a library: frames run on tract, and one line says why.
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let cfg = write_config(
        dir.path(),
        "",
        &format!("onnxruntime_library = {fake:?}"),
        "",
    );
    let out = detect_cmd(&cfg, std::slice::from_ref(&image));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{err}");
    for needle in [
        "cannot open ONNX Runtime at",
        "Serving on tract",
        "fetch-onnxruntime.sh",
    ] {
        assert!(
            warnings[0].contains(needle),
            "{needle:?} not in {}",
            warnings[0]
        );
    }
    let msg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(msg["model"]["backend"], "tract-cpu", "{msg}");
    assert!(!common::boxes(&msg).is_empty());

    // A path that does not exist is a configuration error naming the key.
    let cfg = write_config(dir.path(), "", "onnxruntime_library = \"lib/nope.so\"", "");
    let out = detect_cmd(&cfg, std::slice::from_ref(&image));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("model.onnxruntime_library"), "{err}");
    assert!(err.contains("nope.so is not a file"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn the_daemon_on_onnxruntime_publishes_every_frame_within_its_budget() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let budget_mb = 320;
    let cfg = write_config(
        root,
        &format!("memory_budget_mb = {budget_mb}"),
        "",
        &format!(
            "[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n\
             [mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n",
            broker.url()
        ),
    );
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let mut daemon = Daemon::start_with_env(&cfg, &[("RUST_LOG", "info")]);
    daemon.wait_log("edgewatch ready", Duration::from_secs(120));
    let ready = daemon
        .log()
        .into_iter()
        .find(|l| l.contains("edgewatch ready"))
        .unwrap();
    assert!(ready.contains("onnxruntime-cpu"), "{ready}");
    let mut truths = std::collections::BTreeMap::new();
    for (i, (w, h)) in [
        (1920, 1080),
        (3840, 2160),
        (1920, 1080),
        (1080, 1920),
        (3840, 2160),
        (1920, 1080),
    ]
    .into_iter()
    .enumerate()
    {
        let (img, truth) = render(w, h, 8600 + i as u64, 10, 16, 30);
        let tmp = root.join(format!("f{i}.jpg"));
        common::save(&img, &tmp);
        std::fs::rename(&tmp, inbox.join(format!("f{i}.jpg"))).unwrap();
        truths.insert(format!("f{i}.jpg"), truth);
    }
    sub.wait_until(Duration::from_secs(300), "6 messages", |m| m.len() >= 6);
    let hwm = status_kb(daemon.pid(), "VmHWM:");
    let by_file = common::detections_by_file(&sub);
    assert_eq!(by_file.len(), 6, "{:?}", by_file.keys());
    for (name, truth) in &truths {
        let msg = &by_file[name][0];
        assert_eq!(msg["model"]["backend"], "onnxruntime-cpu", "{msg}");
        let found: Vec<[f32; 4]> = common::boxes(msg)
            .iter()
            .map(|b| [b[0] as f32, b[1] as f32, b[2] as f32, b[3] as f32])
            .collect();
        let r = recall(truth, &found, 0.3);
        assert!(r >= 0.9, "{name}: recall {r:.3}");
    }
    eprintln!(
        "FIGURES onnxruntime daemon: VmHWM {:.1} MiB (budget {budget_mb})",
        hwm as f64 / 1024.0
    );
    assert!(
        hwm <= budget_mb * 1024,
        "peak RSS {hwm} kB is over the {budget_mb} MiB budget"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}

/// `backend = "auto"` (the default) through `check-config`: ONNX Runtime
/// beside the reference model, and tract for a copy of the model with no
/// library beside it, each saying which engine runs and why not a faster.
#[test]
fn auto_takes_onnxruntime_where_it_is_found_and_falls_back_to_tract_saying_why() {
    library();
    let dir = tempfile::tempdir().unwrap();
    let check = |model: &Path, name: &str| {
        let cfg = dir.path().join(name);
        std::fs::write(&cfg, format!("[model]\npath = {model:?}\n")).unwrap();
        let out = Command::new(common::bin())
            .args(["check-config", "--detect"])
            .arg(&cfg)
            .env_remove("ORT_DYLIB_PATH")
            .env_remove("VIRTUAL_ENV")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let found = check(&common::model_path(), "found.toml");
    assert!(
        found.contains("backend auto: onnxruntime-cpu (") && found.contains("not tensorrt: "),
        "{found}"
    );
    assert!(
        found.contains("frame ran on onnxruntime-cpu in "),
        "{found}"
    );

    let alone = dir.path().join("alone/model.onnx");
    std::fs::create_dir(alone.parent().unwrap()).unwrap();
    std::fs::copy(common::model_path(), &alone).unwrap();
    let text = check(&alone, "alone.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with("backend auto: "))
        .unwrap_or_else(|| panic!("no choice line:\n{text}"));
    // A machine-wide ONNX Runtime (a system package, a Python wheel) is
    // found there too; without one, tract runs and the line says why.
    if line.starts_with("backend auto: tract-cpu") {
        assert!(line.contains("no libonnxruntime.so found"), "{line}");
        assert!(text.contains("frame ran on tract-cpu in "), "{text}");
    } else {
        assert!(
            line.starts_with("backend auto: onnxruntime-cpu ("),
            "{line}"
        );
        assert!(
            !line.contains(alone.parent().unwrap().to_str().unwrap()),
            "{line}"
        );
    }
}
