//! YOLO (v5 and v8 layouts) and classifier models end to end: real ONNX files
//! (built by engines/make-test-models.sh) loaded and run by tract, decoded,
//! letterboxed or centre-cropped, merged across tiles, printed by `detect` and
//! published by the daemon to a real mosquitto.
//!
//! The YOLO test models score every 64×64 window (stride 16 in model pixels)
//! by its mean red, green and blue, so a pure-colour square aligned to 16
//! model pixels is found as exactly one box of exactly its size.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{Broker, Daemon, Subscriber};
use image::{Rgb, RgbImage};

const RED: Rgb<u8> = Rgb([255, 0, 0]);
const GREEN: Rgb<u8> = Rgb([0, 255, 0]);
const BLUE: Rgb<u8> = Rgb([0, 0, 255]);

/// A black frame with filled squares `(x, y, side, colour)`.
fn squares(w: u32, h: u32, items: &[(u32, u32, u32, Rgb<u8>)]) -> RgbImage {
    let mut img = RgbImage::new(w, h);
    for &(x, y, side, colour) in items {
        for yy in y..y + side {
            for xx in x..x + side {
                img.put_pixel(xx, yy, colour);
            }
        }
    }
    img
}

fn config(dir: &Path, model: &str, extra: &str) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    let text = format!(
        "[model]\npath = {:?}\n{extra}",
        common::test_model(model).display().to_string()
    );
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn detect(cfg: &Path, images: &[&Path]) -> Output {
    Command::new(common::bin())
        .arg("detect")
        .arg("--config")
        .arg(cfg)
        .args(images)
        .output()
        .unwrap()
}

/// `(label, score, box)` of each detection in each message `detect` printed.
fn found(out: &Output) -> Vec<Vec<(String, f64, [f64; 4])>> {
    assert!(
        out.status.success(),
        "detect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let msg: serde_json::Value = serde_json::from_str(l).expect("one JSON message a line");
            detections(&msg)
        })
        .collect()
}

fn detections(msg: &serde_json::Value) -> Vec<(String, f64, [f64; 4])> {
    msg["detections"]
        .as_array()
        .expect("detections array")
        .iter()
        .map(|d| {
            let b: Vec<f64> = d["box"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            (
                d["label"].as_str().unwrap().to_string(),
                d["score"].as_f64().unwrap(),
                [b[0], b[1], b[2], b[3]],
            )
        })
        .collect()
}

/// Asserts `got` holds exactly the `want` boxes (any order), each within
/// half a pixel and scored above 0.9 (resampling softens the edges a little).
fn assert_boxes(got: &[(String, f64, [f64; 4])], want: &[(&str, [f64; 4])]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (label, b) in want {
        let hit = got.iter().find(|(l, s, g)| {
            l == label && *s > 0.9 && g.iter().zip(b).all(|(x, y)| (x - y).abs() <= 0.5)
        });
        assert!(hit.is_some(), "no {label} box at {b:?} in {got:?}");
    }
}

/// 1280×720 letterboxed into 640×640: scale 0.5, 140 grey rows above and
/// below. Squares of 128 frame pixels at x ≡ 0 (mod 32), y ≡ 8 (mod 32)
/// land on the 16-pixel model grid.
fn letterbox_frame(dir: &Path) -> PathBuf {
    let img = squares(1280, 720, &[(320, 200, 128, RED), (800, 392, 128, GREEN)]);
    let p = dir.join("letterbox.png");
    common::save(&img, &p);
    p
}

const LETTERBOX_WANT: [(&str, [f64; 4]); 2] = [
    ("red", [320.0, 200.0, 448.0, 328.0]),
    ("green", [800.0, 392.0, 928.0, 520.0]),
];

/// What `detect` finds in the letterbox frame with `model` and `[model]` lines `extra`.
fn letterbox_run(model: &str, extra: &str) -> Vec<(String, f64, [f64; 4])> {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), model, extra);
    let img = letterbox_frame(dir.path());
    found(&detect(&cfg, &[&img])).remove(0)
}

#[test]
fn yolov8_boxes_are_letterboxed_and_mapped_back_exactly() {
    // Labels come from the ONNX metadata, as Ultralytics exports write them.
    let got = letterbox_run(
        "yolov8-squares.onnx",
        "family = \"yolo\"\n[tiling]\nmode = \"off\"\n",
    );
    assert_boxes(&got, &LETTERBOX_WANT);
}

#[test]
fn yolov5_layout_with_a_labels_file_gives_the_same_boxes() {
    let names = common::test_model("colors.names");
    let got = letterbox_run(
        "yolov5-squares.onnx",
        &format!(
            "family = \"yolo\"\nlabels_file = {:?}\n[tiling]\nmode = \"off\"\n",
            names.display().to_string()
        ),
    );
    assert_boxes(&got, &LETTERBOX_WANT);
}

#[test]
fn class_filter_and_labels_from_the_config() {
    let got = letterbox_run(
        "yolov8-squares.onnx",
        "family = \"yolo\"\nlabels = [\"rot\", \"gruen\", \"blau\"]\n[tiling]\nmode = \"off\"\n[decode]\nclasses = [\"gruen\"]\n",
    );
    assert_boxes(&got, &[("gruen", [800.0, 392.0, 928.0, 520.0])]);
}

#[test]
fn tiles_merge_objects_spanning_two_and_four_tiles_into_one_box_each() {
    // 1280×720 in 640 tiles with 128 overlap: columns start at 0, 320, 640;
    // rows at 0 and 80. Every tile is seen at full resolution (scale 1).
    let items = [
        // Only in the top-left tile's own corner (one tile).
        (16, 0, 64, BLUE),
        // Columns 0 and 1 overlap in x 320..640, rows overlap in y 80..640:
        // this square lies in four tiles.
        (400, 304, 64, RED),
        // Column 2 only, rows 0 and 1: two tiles.
        (1104, 160, 64, GREEN),
        // Cut by column 0's right edge (x = 640): whole only in column 1.
        (608, 96, 64, GREEN),
    ];
    let dir = tempfile::tempdir().unwrap();
    let img = squares(1280, 720, &items);
    let p = dir.path().join("tiles.png");
    common::save(&img, &p);
    let want: Vec<(&str, [f64; 4])> = items
        .iter()
        .map(|&(x, y, s, c)| {
            let label = match c {
                RED => "red",
                GREEN => "green",
                _ => "blue",
            };
            (label, [x as f64, y as f64, (x + s) as f64, (y + s) as f64])
        })
        .collect();
    for merge in ["nmm", "nms"] {
        for full_frame in [false, true] {
            let cfg = config(
                dir.path(),
                "yolov8-squares.onnx",
                &format!("family = \"yolo\"\n[tiling]\nmode = \"tiles\"\nmerge = \"{merge}\"\nfull_frame = {full_frame}\n"),
            );
            let got = found(&detect(&cfg, &[&p]));
            assert_boxes(&got[0], &want);
        }
    }
    // The same frame untiled: the model sees 32-pixel squares and finds none,
    // which is why tiles exist.
    let cfg = config(
        dir.path(),
        "yolov8-squares.onnx",
        "family = \"yolo\"\n[tiling]\nmode = \"off\"\n",
    );
    assert!(found(&detect(&cfg, &[&p]))[0].is_empty());
}

/// 640×480: red in x 200..440, blue elsewhere. The 0.875 centre crop
/// (x 110..530) is mostly red; the whole frame is mostly blue.
fn crop_frame(dir: &Path) -> PathBuf {
    let mut img = RgbImage::from_pixel(640, 480, BLUE);
    for y in 0..480 {
        for x in 200..440 {
            img.put_pixel(x, y, RED);
        }
    }
    let p = dir.join("crop.png");
    common::save(&img, &p);
    p
}

#[test]
fn classifier_centre_crops_and_reports_top_k_for_logits_and_probabilities() {
    let dir = tempfile::tempdir().unwrap();
    let img = crop_frame(dir.path());
    let mut scores = Vec::new();
    for model in ["classify-colors.onnx", "classify-colors-softmax.onnx"] {
        let cfg = config(
            dir.path(),
            model,
            "family = \"classify\"\nlabels = [\"red\", \"green\", \"blue\"]\n[decode]\ntop_k = 2\n",
        );
        let got = found(&detect(&cfg, &[&img]));
        let labels: Vec<&str> = got[0].iter().map(|d| d.0.as_str()).collect();
        assert_eq!(labels, ["red", "blue"], "{model}: {got:?}");
        assert_eq!(got[0][0].2, [0.0, 0.0, 640.0, 480.0]);
        scores.push((got[0][0].1, got[0][1].1));
    }
    // The crop is 240/420 red: logits 4 × the normalised means give
    // p(red) ≈ 0.75. The softmax model must score the same: soft-maxing its
    // probabilities again would flatten them to about 0.46.
    assert!((scores[0].0 - 0.75).abs() < 0.02, "{scores:?}");
    assert!((scores[0].0 - scores[1].0).abs() < 2e-3, "{scores:?}");
    assert!((scores[0].1 - scores[1].1).abs() < 2e-3, "{scores:?}");
    // crop = 1.0 still excludes the blue sides; a centre crop of a blue frame is blue.
    let cfg = config(
        dir.path(),
        "classify-colors.onnx",
        "family = \"classify\"\nlabels_file = \"labels.txt\"\n[decode]\ntop_k = 1\n",
    );
    std::fs::write(dir.path().join("labels.txt"), "red\ngreen\nblue\n").unwrap();
    let blue = dir.path().join("blue.png");
    common::save(&RgbImage::from_pixel(300, 200, BLUE), &blue);
    let got = found(&detect(&cfg, &[&blue]));
    assert_eq!(got[0].len(), 1);
    assert_eq!(got[0][0].0, "blue");
}

fn fails_with(cfg: &Path, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("x.png");
    common::save(&RgbImage::new(64, 64), &img);
    let out = detect(cfg, &[&img]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    // Every configuration error, found in the file or only by the model,
    // is said one way: `config error: FILE:LINE: key `…`: why`.
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("config error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    for n in needles {
        assert!(errors[0].contains(n), "{n:?} not in: {err}");
    }
}

#[test]
fn layouts_that_do_not_fit_fail_at_start_up_showing_the_shapes() {
    let dir = tempfile::tempdir().unwrap();
    // The text model run as YOLO: its map is no YOLO layout.
    let cfg = dir.path().join("db-as-yolo.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\nfamily = \"yolo\"\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    fails_with(
        &cfg,
        &["[1, 1, 640, 640]", "YOLOv5", "YOLOv8", "model.family"],
    );
    let cases: [(&str, &str, &[&str]); 5] = [
        // A YOLO export left at the default family (db): its fixed 640×640
        // is run as it is, and the layout is named.
        (
            "yolov5-squares.onnx",
            "",
            &["[1, 1369, 8]", "DB (text)", "family = \"yolo\""],
        ),
        // Labels that do not match the class count.
        (
            "yolov8-squares.onnx",
            "family = \"yolo\"\nlabels = [\"a\", \"b\"]\n",
            &["[1, 7, 1369]", "C = 2"],
        ),
        (
            "classify-colors.onnx",
            "family = \"classify\"\nlabels = [\"a\", \"b\"]\n",
            &["3 classes", "2 labels"],
        ),
        // A class filter naming no label.
        (
            "yolov8-squares.onnx",
            "family = \"yolo\"\n[decode]\nclasses = [\"dog\"]\n",
            &["decode.classes", "\"dog\"", "red, green, blue"],
        ),
        // A fixed-input model (batch symbolic, H×W fixed) told another size.
        (
            "yolov5-squares.onnx",
            "family = \"yolo\"\ninput = { width = 320, height = 320 }\n",
            &["model.input", "640x640"],
        ),
    ];
    for (model, extra, needles) in cases {
        fails_with(&config(dir.path(), model, extra), needles);
    }
}

fn check_config(cfg: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(cfg)
        .arg("--detect")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test models are written as exporters write theirs (see
/// make_test_models.py): symbolic batch names, `value_info` carrying them,
/// current opsets. Each loads, names its layout in the config's words, and
/// says where its labels came from.
#[test]
fn exporter_style_models_load_and_say_where_their_labels_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let names = common::test_model("colors.names");
    let labels_file = format!("labels_file = {:?}\n", names.display().to_string());
    let cases: [(&str, &str, String, &str, &str); 5] = [
        (
            "yolov8-squares.onnx",
            "batch",
            "family = \"yolo\"\n".into(),
            "model: yolo (YOLOv8 [4+C, N] layout, 3 classes, 1369 candidates), 3 label(s) (red, green, blue), labels from the ONNX metadata `names`, input 640x640",
            "(family yolo, backend cpu), tiling auto",
        ),
        (
            "yolov5-squares.onnx",
            "batch",
            format!("family = \"yolo\"\n{labels_file}"),
            "model: yolo (YOLOv5 [N, 5+C] layout, 3 classes, 1369 candidates), 3 label(s) (red, green, blue), labels from model.labels_file, input 640x640",
            "(family yolo, backend cpu)",
        ),
        (
            "classify-colors.onnx",
            "batch_size",
            "family = \"classify\"\n".into(),
            "model: classify (3 classes), 3 label(s) (class0, class1, class2), labels from defaults (none given), input 224x224",
            "(family classify, backend cpu)",
        ),
        (
            "classify-colors-softmax.onnx",
            "DynamicDimension.0",
            "family = \"classify\"\n".into(),
            "model: classify (3 classes), 3 label(s) (red, green, blue), labels from the ONNX metadata `character`, input 224x224",
            "(family classify, backend cpu)",
        ),
        (
            "db-bright.onnx",
            "DynamicDimension.0",
            "[tiling]\nmode = \"off\"\n".into(),
            "model: db (a text probability map), 1 label(s) (text), labels from defaults (none given), input dynamic",
            "(family db, backend cpu), tiling off",
        ),
    ];
    for (model, symbol, extra, want, first) in cases {
        // The file really carries the exporter's symbol inside the graph.
        let bytes = std::fs::read(common::test_model(model)).unwrap();
        let hits = bytes
            .windows(symbol.len())
            .filter(|w| *w == symbol.as_bytes())
            .count();
        assert!(hits >= 3, "{model}: {symbol} appears {hits} times");
        let (code, stdout, stderr) = check_config(&config(dir.path(), model, &extra));
        assert_eq!(code, Some(0), "{model}: {stdout} {stderr}");
        assert!(stdout.contains(want), "{model}: want {want:?} in {stdout}");
        assert!(
            stdout.contains(first),
            "{model}: want {first:?} in {stdout}"
        );
        assert!(
            !stdout.contains("Cpu") && !stdout.contains("Db"),
            "{stdout}"
        );
    }
}

/// The Paddle-style DB model is dynamic in batch, height and width (and its
/// inner maps carry symbols of their own): frames of two sizes each get their
/// plan, and a bright bar is found as text where it is.
#[test]
fn paddle_style_db_model_finds_text_at_two_frame_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "db-bright.onnx", "[tiling]\nmode = \"off\"\n");
    let mut paths = Vec::new();
    for (w, h) in [(640, 480), (800, 600)] {
        let img = squares(w, h, &[(200, 160, 120, Rgb([255, 255, 255]))]);
        let p = dir.path().join(format!("bar-{w}.png"));
        common::save(&img, &p);
        paths.push(p);
    }
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let got = found(&detect(&cfg, &refs));
    assert_eq!(got.len(), 2);
    for frame in got {
        assert_eq!(frame.len(), 1, "{frame:?}");
        let (label, score, b) = &frame[0];
        assert_eq!(label, "text");
        assert!(*score > 0.9, "{frame:?}");
        // DB boxes are the region grown by its unclip ratio: around the square.
        assert!(
            b[0] <= 201.0 && b[1] <= 161.0 && b[2] >= 319.0 && b[3] >= 279.0,
            "{b:?}"
        );
        assert!(
            b[0] >= 150.0 && b[1] >= 110.0 && b[2] <= 370.0 && b[3] <= 330.0,
            "{b:?}"
        );
    }
}

#[test]
fn check_config_loads_the_model_and_names_its_layout() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "yolov5-squares.onnx", "family = \"yolo\"\n");
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(&cfg)
        .arg("--detect")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("yolo (YOLOv5 [N, 5+C] layout, 3 classes, 1369 candidates)"),
        "{stdout}"
    );
    assert!(stdout.contains("class0, class1, class2"), "{stdout}");
    let cfg = config(dir.path(), "yolov5-squares.onnx", "");
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(&cfg)
        .arg("--detect")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("[1, 1369, 8]"));
}

#[test]
fn daemon_publishes_labelled_boxes_to_mqtt() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let cfg = config(
        dir.path(),
        "yolov8-squares.onnx",
        &format!(
            r#"family = "yolo"
[tiling]
mode = "off"
[[source]]
name = "dock"
kind = "folder"
path = "inbox"
settle_ms = 100
[mqtt]
url = "{}"
outbox = "outbox"
"#,
            broker.url()
        ),
    );
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let staged = letterbox_frame(dir.path());
    std::fs::rename(&staged, inbox.join("pallet.png")).unwrap();
    let daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let got = sub.wait_until(Duration::from_secs(60), "one detection message", |all| {
        all.iter().any(|m| m.topic.ends_with("/dock/detections"))
    });
    let msg = got
        .iter()
        .find(|m| m.topic.ends_with("/dock/detections"))
        .unwrap()
        .json();
    assert_eq!(msg["schema"], "edgewatch.detections/1");
    assert_eq!(msg["model"]["name"], "yolov8-squares");
    assert_eq!(msg["image"]["width"], 1280);
    assert_boxes(&detections(&msg), &LETTERBOX_WANT);
    for d in msg["detections"].as_array().unwrap() {
        assert!(d.get("quad").is_none(), "boxes have no quad: {d}");
        assert!(d["class_id"].as_u64().unwrap() < 3);
    }
}
