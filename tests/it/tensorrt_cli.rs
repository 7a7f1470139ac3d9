//! `backend = "tensorrt"` on this machine: the default build has no
//! TensorRT support and the machine has no TensorRT, and both are said in one
//! line naming the key, with exit 2. (The feature build's own start-up
//! errors, against stand-in libraries, are checked by cross/check-tensorrt.sh.)

use std::process::Command;

/// Runs `edgewatch ARGS… CONFIG`: the exit code and stderr.
fn edgewatch(args: &[&str], config: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgewatch"))
        .args(args)
        .arg(config)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn config(dir: &std::path::Path, backend: &str) -> std::path::PathBuf {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
    let path = dir.join("ew.toml");
    std::fs::write(
        &path,
        format!(
            "memory_budget_mb = 1024\n[model]\npath = \"{}\"\nbackend = \"{backend}\"\n[tensorrt]\nengines = \"engines\"\n",
            model.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn tensorrt_backend_without_tensorrt_is_refused_naming_the_key_and_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "tensorrt");
    let (code, err) = edgewatch(&["check-config", "--detect"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("model.backend"), "{err}");
    assert!(err.contains("built without TensorRT support"), "{err}");
    assert!(err.contains("libnvinfer.so.8 or libnvinfer.so.10"), "{err}");
    assert!(err.contains("backend = \"cpu\""), "{err}");

    let (code, err) = edgewatch(&["build-engine", "--config"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("model.backend"), "{err}");
}

#[test]
fn build_engine_on_a_cpu_config_says_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "cpu");
    let (code, err) = edgewatch(&["build-engine", "--config"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("model.backend = \"tensorrt\""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn bad_tensorrt_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "cpu");
    let text = std::fs::read_to_string(&cfg).unwrap() + "workspace_mb = 2\n";
    std::fs::write(&cfg, text).unwrap();
    let (code, err) = edgewatch(&["check-config", "--detect"], &cfg);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("tensorrt.workspace_mb"), "{err}");
}
