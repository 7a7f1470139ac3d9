//! Loads the configured model once per process and identifies it.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::tract::TractModel;
use super::{InferError, ModelConfig};

/// What messages say about the model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// File stem, e.g. `ppocr-det-v4`.
    pub name: String,
    /// Hex sha256 of the ONNX file.
    pub sha256: String,
    /// Backend label, e.g. `tract-cpu`.
    pub backend: &'static str,
}

/// A model loaded and ready to hand out per-worker engines.
#[derive(Clone)]
pub struct LoadedModel {
    /// The optimised plan.
    pub tract: TractModel,
    /// Identity.
    pub info: ModelInfo,
}

impl LoadedModel {
    /// Hashes and loads the model named by `cfg`, and optimises it for the
    /// NCHW input shape `warm` now.
    pub fn load(cfg: &ModelConfig, warm: [usize; 4]) -> Result<LoadedModel, InferError> {
        let sha256 = sha256_file(&cfg.path).map_err(|e| InferError::Load {
            path: cfg.path.clone(),
            reason: e.to_string(),
        })?;
        let tract = TractModel::load(&cfg.path)?;
        tract.plan(warm)?;
        let name = cfg
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(LoadedModel {
            tract,
            info: ModelInfo {
                name,
                sha256,
                backend: cfg.backend.label(),
            },
        })
    }
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
