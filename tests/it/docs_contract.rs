//! What README and docs/ promise, checked against the binary as an operator
//! runs it: check-config's lines and "ok", line numbers, no password in a
//! log, every message field in docs/messages.md.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn check_config(file: &Path, detect: bool) -> Output {
    let mut cmd = Command::new(common::bin());
    cmd.arg("check-config").arg(file);
    if detect {
        cmd.arg("--detect");
    }
    cmd.output().unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn model() -> String {
    format!("{:?}", common::model_path().display().to_string())
}

/// `--detect` never checks less: a bad [mqtt] that is in the file is
/// reported either way. "ok" comes last and only when everything passed,
/// after one frame ran through the model.
#[test]
fn check_config_checks_everything_runs_a_frame_and_says_ok_last() {
    let dir = tempfile::tempdir().unwrap();
    let bad_url = write(
        dir.path(),
        "bad.toml",
        &format!("[model]\npath = {}\n[mqtt]\nurl = \"http://x\"\n", model()),
    );
    for detect in [false, true] {
        let out = check_config(&bad_url, detect);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--detect {detect}: {stderr}");
        assert!(stderr.contains("`mqtt.url`"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("ok"));
    }

    // A truncated model: no "ok" anywhere, the model.path error, exit 2.
    let bytes = std::fs::read(common::model_path()).unwrap();
    std::fs::write(dir.path().join("cut.onnx"), &bytes[..bytes.len() / 3]).unwrap();
    let cut = write(
        dir.path(),
        "cut.toml",
        "[model]\npath = \"cut.onnx\"\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n",
    );
    let out = check_config(&cut, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !stdout.contains(" ok"),
        "ok before the model was checked: {stdout}"
    );
    // The model's error names the file and line of `model.path`, as value
    // errors do.
    let want = format!("config error: {}:2: key `model.path`", cut.display());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&want),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A good file without [mqtt] (every key has a default): a frame ran,
    // and "ok" is the last line.
    let good = write(
        dir.path(),
        "good.toml",
        &format!(
            "[model]\npath = {}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n",
            model()
        ),
    );
    let out = check_config(&good, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.last().unwrap().contains(": ok — "), "{stdout}");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "one 1920x1080 frame ran on {} in ",
            common::auto_label()
        ))),
        "{stdout}"
    );
    assert!(stdout.contains("broker mqtt://127.0.0.1:1883"), "{stdout}");
    assert!(stdout.contains("decoded scaled down"), "{stdout}");
}

/// Value errors carry FILE:LINE like parse errors do; a typo inside a
/// source's sub-table is named by its full key at its own line.
#[test]
fn value_errors_and_nested_typos_name_file_line_and_full_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "lines.toml",
        &format!(
            "memory_budget_mb = 320\n[model]\npath = {}\n\n[decode]\nbox_threshold = 7.0\n[mqtt]\nurl = \"http://x\"\n[telemetry]\nlisten = \"nope\"\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n",
            model()
        ),
    );
    let out = check_config(&file, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let shown = file.display().to_string();
    for (line, key) in [
        (6, "decode.box_threshold"),
        (8, "mqtt.url"),
        (10, "telemetry.listen"),
    ] {
        let want = format!("config error: {shown}:{line}: key `{key}`");
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }

    let nested = write(
        dir.path(),
        "nested.toml",
        &format!(
            "[model]\npath = {}\n[[source]]\nname = \"cam\"\nkind = \"replay\"\npath = \"a.ewraw\"\n[source.events]\nmin_mvoe = 0.3\n",
            model()
        ),
    );
    let out = check_config(&nested, true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let want = format!(
        "config error: {}:8: key `source[0].events.min_mvoe`",
        nested.display()
    );
    assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");

    // A key typo and a wrong source kind: both said in one run.
    let two = write(
        dir.path(),
        "two.toml",
        &format!(
            "[model]\npath = {}\nfamly = \"db\"\n[[source]]\nname = \"a\"\nkind = \"foldr\"\npath = \"in\"\n",
            model()
        ),
    );
    let out = check_config(&two, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in [
        format!("{}:3: key `model.famly`", two.display()),
        format!("{}:6: key `source[0].kind`", two.display()),
    ] {
        assert!(stderr.contains(&want), "no {want:?} in:\n{stderr}");
    }
}

/// A password inside the MQTT URL is refused without being echoed.
#[test]
fn no_password_reaches_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let in_url = write(
        dir.path(),
        "url.toml",
        &format!(
            "[model]\npath = {}\n[[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"in\"\n[mqtt]\nurl = \"mqtt://user:s3cret@127.0.0.1:1883\"\n",
            model()
        ),
    );
    let out = check_config(&in_url, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("`mqtt.url`") && stderr.contains("credentials"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret") && !String::from_utf8_lossy(&out.stdout).contains("s3cret"));

    // With `password_file`, the refusal and the reconnect warnings are
    // logged, the password is not: delivery.rs's
    // wrong_password_is_reported_and_retried_without_leaking_it.
}

/// Every field of a real message (a file through the daemon, scaled and
/// not, with `[read]`) has a row in docs/messages.md's table.
#[test]
fn every_message_field_is_in_the_schema_table() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/messages.md"))
            .unwrap();
    let table: String = doc
        .split("| field | type | meaning |")
        .nth(1)
        .and_then(|t| t.split("\n\n").next())
        .expect("the field table")
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "e.toml",
        &format!(
            "max_pixels = 1000000\n[model]\npath = {}\n[read]\npath = {:?}\n",
            model(),
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("engines/ppocr-rec-v4.onnx")
                .display()
                .to_string()
        ),
    );
    let (img, _) = common::textimg::render(1600, 900, 3, 3, 26, 34);
    let small = dir.path().join("small.png");
    common::save(
        &image::imageops::resize(&img, 640, 360, image::imageops::FilterType::Triangle),
        &small,
    );
    let large = dir.path().join("large.png");
    common::save(&img, &large);
    let msgs = common::detect(&cfg, &[small, large]);
    assert_eq!(msgs[1]["image"]["scaled_to"], serde_json::json!([800, 450]));
    let mut fields = std::collections::BTreeSet::new();
    for m in &msgs {
        collect(m, "", &mut fields);
    }
    assert!(fields.contains("detections[].quad"), "{fields:?}");
    assert!(fields.contains("detections[].text"), "{fields:?}");
    assert!(fields.contains("detections[].text_score"), "{fields:?}");
    for f in &fields {
        assert!(
            table.contains(&format!("`{f}`"))
                || table.contains(&format!("`{}`", f.split('.').next().unwrap())),
            "message field `{f}` is not in docs/messages.md's table"
        );
    }
}

fn collect(v: &serde_json::Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match v {
                    serde_json::Value::Object(_) if k != "timing_ms" => collect(v, &key, out),
                    serde_json::Value::Array(items)
                        if items.first().is_some_and(|i| i.is_object()) =>
                    {
                        for item in items {
                            collect(item, &format!("{key}[]"), out);
                        }
                    }
                    _ => {
                        out.insert(key);
                    }
                }
            }
        }
        _ => {
            out.insert(at.to_string());
        }
    }
}
