//! With the `tensorrt` feature, compiles the TensorRT shim
//! (src/infer/tensorrt/shim) against TensorRT's and CUDA's headers. Nothing
//! is linked against them: the daemon opens the libraries at run time.
//!
//! Without the headers, `cargo check` and clippy still go through (they do
//! not link), and a real build stops at link time with one line saying what
//! to install.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_TENSORRT").is_none() {
        // `edgewatch --version` says which TensorRT a build drives.
        println!("cargo:rustc-env=EDGEWATCH_BACKENDS= (CPU: tract, ONNX Runtime; no TensorRT)");
        return;
    }
    println!("cargo:rerun-if-changed=src/infer/tensorrt/shim");
    for var in ["TENSORRT_ROOT", "CUDA_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = format!("/usr/include/{arch}-linux-gnu");
    let env_dir = |var: &str| std::env::var_os(var).map(|v| Path::new(&v).join("include"));
    let trt_dirs: Vec<PathBuf> = env_dir("TENSORRT_ROOT")
        .into_iter()
        .chain(
            [
                multiarch.as_str(),
                "/usr/local/TensorRT/include",
                "/usr/include",
            ]
            .iter()
            .map(PathBuf::from),
        )
        .collect();
    let cuda_dirs: Vec<PathBuf> = env_dir("CUDA_HOME")
        .into_iter()
        .chain(
            ["/usr/local/cuda/include", "/usr/include"]
                .iter()
                .map(PathBuf::from),
        )
        .collect();
    let find = |dirs: &[PathBuf], file: &str| dirs.iter().find(|d| d.join(file).is_file()).cloned();
    let found = (
        find(&trt_dirs, "NvInfer.h"),
        find(&trt_dirs, "NvOnnxParser.h"),
        find(&cuda_dirs, "cuda_runtime_api.h"),
    );
    let (Some(trt), Some(parser), Some(cuda)) = found else {
        let missing: Vec<&str> = [
            (found.0.is_none(), "NvInfer.h"),
            (found.1.is_none(), "NvOnnxParser.h"),
            (found.2.is_none(), "cuda_runtime_api.h"),
        ]
        .iter()
        .filter(|(m, _)| *m)
        .map(|(_, f)| *f)
        .collect();
        let line = format!(
            "edgewatch feature tensorrt: {} not found (looked in TENSORRT_ROOT/include, CUDA_HOME/include, {multiarch}, /usr/local/cuda/include, /usr/include). Install TensorRT and CUDA development headers (JetPack: sudo apt install nvidia-tensorrt-dev cuda-cudart-dev-10-2) or set TENSORRT_ROOT and CUDA_HOME; or build without --features tensorrt",
            missing.join(", ")
        );
        println!("cargo:warning={line}");
        println!("cargo:rustc-env=EDGEWATCH_BACKENDS= (CPU: tract, ONNX Runtime; TensorRT headers missing)");
        // A type-check never links, so check and clippy pass; a real build
        // stops here with the line above instead of undefined symbols.
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        let script = out.join("tensorrt-headers-missing.ld");
        // The shim's symbols are defined as 0 so that the linker's only
        // complaint is this line, not a list of undefined symbols.
        let symbols: String = [
            "ew_trt_header_version",
            "ew_trt_abi",
            "ew_trt_device_info",
            "ew_trt_build",
            "ew_trt_blob_free",
            "ew_trt_load",
            "ew_trt_run",
            "ew_trt_unload",
        ]
        .iter()
        .map(|s| format!("{s} = 0;\n"))
        .collect();
        std::fs::write(
            &script,
            format!("{symbols}ASSERT(0, \"{}\");\n", line.replace('"', "'")),
        )
        .expect("OUT_DIR is writable");
        println!("cargo:rustc-link-arg={}", script.display());
        return;
    };
    let v = header_version(&trt).unwrap_or_else(|| "?.?.?".into());
    let parts: Vec<&str> = v.split('.').collect();
    println!(
        "cargo:rustc-env=EDGEWATCH_BACKENDS= (CPU: tract, ONNX Runtime; TensorRT: built against {v} headers, runs on {}.{} or a later {}.x)",
        parts[0], parts[1], parts[0]
    );
    compile_shim(&[trt, parser, cuda]);
}

/// `major.minor.patch` from NvInferVersion.h in `dir`.
fn header_version(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("NvInferVersion.h")).ok()?;
    let get = |name: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("#define {name} ")))
            .and_then(|v| v.split_whitespace().next().map(str::to_string))
    };
    let major = get("TRT_MAJOR_ENTERPRISE").or_else(|| get("NV_TENSORRT_MAJOR"))?;
    let minor = get("TRT_MINOR_ENTERPRISE").or_else(|| get("NV_TENSORRT_MINOR"))?;
    let patch = get("TRT_PATCH_ENTERPRISE").or_else(|| get("NV_TENSORRT_PATCH"))?;
    Some(format!("{major}.{minor}.{patch}"))
}

#[cfg(feature = "tensorrt")]
fn compile_shim(include: &[PathBuf]) {
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("src/infer/tensorrt/shim/ew_trt.cpp")
        .include("src/infer/tensorrt/shim")
        .warnings(true)
        .extra_warnings(true);
    let mut seen: Vec<&PathBuf> = Vec::new();
    for dir in include {
        if !seen.contains(&dir) {
            // -isystem: TensorRT's own headers warn about their deprecations.
            build.flag(format!("-isystem{}", dir.display()));
            seen.push(dir);
        }
    }
    build.compile("ew_trt_shim");
}

#[cfg(not(feature = "tensorrt"))]
fn compile_shim(_: &[PathBuf]) {}
