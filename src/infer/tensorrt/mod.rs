//! The TensorRT backend: FP16 engines built from the ONNX file on the device
//! itself, cached, and run through a small C++ shim (`shim/`).
//!
//! Everything that needs no GPU is always compiled and tested: the engine
//! cache, the library loader, the build decisions, the FP16 check and the
//! background build. The shim and the engine that drives it need the
//! `tensorrt` feature (and TensorRT's headers to compile).

pub mod background;
pub mod cache;
pub mod check;
pub mod ffi;
pub mod libs;
pub mod settings;

#[cfg(feature = "tensorrt")]
pub mod engine;
#[cfg(feature = "tensorrt")]
pub mod startup;

/// The TensorRT headers the shim in this binary was compiled against (none
/// without the feature).
pub fn compiled_version() -> Option<libs::TrtVersion> {
    #[cfg(feature = "tensorrt")]
    {
        // SAFETY: returns a constant.
        let v = unsafe { ffi::ew_trt_header_version() } as u32;
        Some(libs::TrtVersion {
            major: v / 10_000,
            minor: v / 100 % 100,
            patch: v % 100,
        })
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        None
    }
}

/// The TensorRT major the shim in this binary was compiled for.
pub fn compiled_major() -> Option<u32> {
    compiled_version().map(|v| v.major)
}

/// Why `backend = "tensorrt"` cannot run with this binary on this machine:
/// always, without the feature; the message says whether TensorRT is here.
pub fn unavailable_reason() -> Option<String> {
    if compiled_major().is_some() {
        return None;
    }
    let found = libs::Libraries::open(&libs::SearchPaths::from_env(), &[8, 10, 11], None);
    Some(match found {
        Ok(l) => format!(
            "this edgewatch was built without TensorRT support, though TensorRT {} is installed ({}): install the edgewatch build with the tensorrt feature (cargo build --release --features tensorrt), or use backend = \"cpu\"",
            l.version, l.paths[0]
        ),
        Err(e) => format!(
            "this edgewatch was built without TensorRT support (cargo feature \"tensorrt\"), and this machine has none either: {}",
            e.to_string().trim_start_matches("backend \"tensorrt\": ")
        ),
    })
}
