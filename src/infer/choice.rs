//! `backend = "auto"` (the default): the fastest engine this machine can
//! run, decided once when the configuration is read. TensorRT where this
//! build has it and its libraries are installed, else ONNX Runtime where
//! its library is found, else tract (pure Rust, always there). The reason
//! goes with the choice, so the ready line and `check-config` say which
//! engine runs and why not a faster one.

use super::{onnxruntime, tensorrt, Backend, ModelConfig};

/// Resolves `model.backend = "auto"` in place and returns, in one line,
/// what was chosen and why not the faster ones; `None` for a backend the
/// operator named.
pub fn resolve(model: &mut ModelConfig) -> Option<String> {
    if model.backend != Backend::Auto {
        return None;
    }
    let no_tensorrt = match tensorrt_here() {
        Ok(found) => {
            model.backend = Backend::Tensorrt;
            return Some(format!("backend auto: tensorrt ({found})"));
        }
        Err(why) => why,
    };
    let located = onnxruntime::library::locate(model.onnxruntime_library.as_deref(), &model.path)
        .and_then(|lib| {
            if lib.is_file() {
                Ok(lib)
            } else {
                Err(onnxruntime::library::OrtError::NotAFile { path: lib })
            }
        });
    Some(match located {
        Ok(lib) => {
            model.backend = Backend::Onnxruntime;
            format!(
                "backend auto: onnxruntime-cpu ({}); not tensorrt: {no_tensorrt}",
                lib.display()
            )
        }
        Err(why) => {
            model.backend = Backend::Cpu;
            format!(
                "backend auto: tract-cpu (pure Rust; ONNX Runtime is about twice as fast here but {}); not tensorrt: {no_tensorrt}",
                short_ort_reason(&why)
            )
        }
    })
}

/// `locate`'s error without its how-to tail, which the log line has no
/// room for (docs/onnxruntime.md says it).
fn short_ort_reason(why: &onnxruntime::library::OrtError) -> String {
    let first = match why {
        onnxruntime::library::OrtError::NotFound { .. } => {
            format!("no {} found", onnxruntime::library::FILE)
        }
        other => other.to_string(),
    };
    format!("{first}: run engines/fetch-onnxruntime.sh or install the package's library")
}

/// TensorRT's libraries, when this build can drive them.
fn tensorrt_here() -> Result<String, String> {
    let Some(major) = tensorrt::compiled_major() else {
        return Err("this build has no TensorRT (cargo feature \"tensorrt\", for Jetson)".into());
    };
    tensorrt::libs::Libraries::open(&tensorrt::libs::SearchPaths::from_env(), &[major], None)
        .map(|l| format!("TensorRT {} from {}", l.version, l.paths[0]))
        .map_err(|e| crate::base::text::one_line(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_onnxruntime_beside_the_model_and_says_why_not_tensorrt() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("onnxruntime")).unwrap();
        std::fs::write(dir.path().join("onnxruntime/libonnxruntime.so"), b"x").unwrap();
        let mut m = ModelConfig::new(dir.path().join("m.onnx"));
        assert_eq!(m.backend, Backend::Auto);
        let why = resolve(&mut m).unwrap();
        if tensorrt::compiled_major().is_none() {
            assert_eq!(m.backend, Backend::Onnxruntime, "{why}");
            assert!(
                why.contains("not tensorrt: this build has no TensorRT"),
                "{why}"
            );
        }
    }

    #[test]
    fn auto_falls_back_to_tract_naming_the_missing_library_and_named_backends_stay() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = ModelConfig::new(dir.path().join("m.onnx"));
        m.onnxruntime_library = Some(dir.path().join("missing.so"));
        let why = resolve(&mut m).unwrap();
        assert_eq!(m.backend, Backend::Cpu, "{why}");
        assert!(why.contains("missing.so is not a file"), "{why}");
        let mut named = ModelConfig::new(dir.path().join("m.onnx"));
        named.backend = Backend::Cpu;
        assert_eq!(resolve(&mut named), None);
        assert_eq!(named.backend, Backend::Cpu);
    }
}
