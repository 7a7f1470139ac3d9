//! `edgewatch detect` and `check-config` as a user runs them: the real binary,
//! the real model, real files.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::textimg::{boxes_of, precision, recall, render};

fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n{extra}",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn detect_finds_rendered_text_in_1080p_images() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let mut truths = Vec::new();
    let mut paths = Vec::new();
    for seed in 0..4u64 {
        let (img, boxes) = render(1920, 1080, 100 + seed, 8, 26, 44);
        let ext = if seed % 2 == 0 { "jpg" } else { "png" };
        let p = dir.path().join(format!("img{seed}.{ext}"));
        common::save(&img, &p);
        truths.push(boxes);
        paths.push(p);
    }
    let lines = common::detect(&cfg, &paths);
    assert_eq!(lines.len(), 4, "one message per image");
    let (mut hit, mut total) = (0.0, 0usize);
    for (i, (msg, truth)) in lines.iter().zip(&truths).enumerate() {
        assert_eq!(msg["schema"], "edgewatch.detections/1");
        assert_eq!(msg["image"]["width"], 1920);
        assert_eq!(msg["image"]["height"], 1080);
        assert!(
            msg["image"]["path"].as_str().unwrap().ends_with(&format!(
                "img{i}.{}",
                if i % 2 == 0 { "jpg" } else { "png" }
            )),
            "in input order"
        );
        assert_eq!(
            msg["model"]["sha256"],
            "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"
        );
        assert!(msg["timing_ms"]["total"].as_f64().unwrap() > 0.0);
        let found = boxes_of(msg);
        let r = recall(truth, &found, 0.3);
        let p = precision(truth, &found, 0.3);
        eprintln!(
            "image {i}: {} truth, {} found, recall {r:.2}, precision {p:.2}",
            truth.len(),
            found.len()
        );
        hit += r * truth.len() as f32;
        total += truth.len();
    }
    let overall = hit / total as f32;
    assert!(overall >= 0.95, "recall {overall:.3} < 0.95");
}

#[test]
fn a_bad_file_fails_alone_and_the_rest_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "");
    let (img, _) = render(640, 360, 7, 3, 24, 30);
    let good = dir.path().join("good.png");
    common::save(&img, &good);
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let junk = dir.path().join("junk.png");
    std::fs::write(&junk, b"definitely not a png").unwrap();
    let out = Command::new(common::bin())
        .args(["detect", "--config"])
        .arg(&cfg)
        .args([&empty, &good, &junk])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "some images failed → exit 1");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "the good image still printed: {stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("empty.jpg: the file is empty"), "{stderr}");
    assert!(
        stderr.contains("junk.png: not a supported image"),
        "{stderr}"
    );
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[decode]\nbox_threshold = 7\n");
    let out = Command::new(common::bin())
        .args(["detect", "--config"])
        .arg(&cfg)
        .arg("x.jpg")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("key `decode.box_threshold`"), "{stderr}");
    assert!(stderr.contains(&cfg.display().to_string()), "{stderr}");
}

#[test]
fn check_config_explains_every_problem_and_accepts_a_good_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "device = \"a/b\"\n[model]\npath = \"nope.onnx\"\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n[mqtt]\nurl = \"http://x\"\n",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for key in ["`device`", "`model.path`", "`mqtt.url`"] {
        assert!(stderr.contains(key), "{key} not reported: {stderr}");
    }
    assert_eq!(stderr.lines().count(), 3, "one line per problem: {stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[model]\npath = {:?}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n[mqtt]\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn the_shipped_example_configs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    common::model_path();
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(root.join("deploy/quickstart.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "quickstart.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The production example points at /var/lib/edgewatch, which a build
    // machine lacks: the model path is the only thing allowed to fail.
    let out = Command::new(common::bin())
        .arg("check-config")
        .arg(root.join("deploy/edgewatch.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().all(|l| l.contains("key `model.path`")),
        "edgewatch.toml: {stderr}"
    );
}

/// A panic on one image (a real book page once panicked the DB decoder)
/// costs that image only: one stderr line naming it, a non-zero exit, and
/// every other image's message on stdout in order. Ids are the folder's
/// stable hash of the file, the same on every run.
#[test]
fn detect_survives_a_panic_on_one_image_of_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "[tiling]\nmode = \"off\"\n");
    let (img, _) = render(320, 96, 5, 1, 30, 30);
    // The faulty engine panics on the magenta one.
    let paths: Vec<_> = ["a.png", "boom.png", "c.png"]
        .iter()
        .map(|n| {
            let p = dir.path().join(n);
            if *n == "boom.png" {
                common::save(&common::magenta(320, 96), &p);
            } else {
                common::save(&img, &p);
            }
            p
        })
        .collect();
    let run = || {
        Command::new(common::faulty_bin())
            .args(["detect", "--config"])
            .arg(&cfg)
            .args(&paths)
            .output()
            .unwrap()
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let files: Vec<&str> = lines
        .iter()
        .map(|m| m["image"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{stdout}");
    assert!(
        files[0].ends_with("a.png") && files[1].ends_with("c.png"),
        "{files:?}"
    );
    // Log lines (INFO, with a time stamp) aside, what the operator reads.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("edgewatch:") || l.contains("panicked"))
        .collect();
    assert_eq!(errors.len(), 1, "one line for the failed image: {stderr}");
    assert!(
        errors[0].contains("boom.png") && errors[0].contains("faulty engine: a magenta frame"),
        "{}",
        errors[0]
    );
    // Ids: `cli-` and 16 hex digits, stable across runs, distinct per file.
    let ids: Vec<String> = lines
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    for id in &ids {
        let hex = id.strip_prefix("cli-").unwrap_or_else(|| panic!("{id}"));
        assert!(
            hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
    assert_ne!(ids[0], ids[1]);
    let again = String::from_utf8_lossy(&run().stdout).to_string();
    let again_ids: Vec<String> = again
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(again_ids, ids);
}
