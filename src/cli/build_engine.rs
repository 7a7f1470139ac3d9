//! `edgewatch build-engine`: the TensorRT engine built ahead of time.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Purpose;

use super::{load, EXIT_CONFIG};

/// Builds and caches the engine for the config at `path`.
pub fn build_engine(path: &Path) -> ExitCode {
    let config = match load(path, Purpose::Detect) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if config.model.backend != crate::infer::Backend::Tensorrt {
        eprintln!(
            "edgewatch: {}: model.backend is \"{}\"; set model.backend = \"tensorrt\" to build an engine",
            path.display(),
            config.model.backend.name()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    #[cfg(feature = "tensorrt")]
    {
        match crate::runtime::engine_build::build_engine(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("edgewatch: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "tensorrt"))]
    {
        // `load` already refused backend = "tensorrt" in this build.
        ExitCode::from(EXIT_CONFIG)
    }
}
