//! Inference: the `Engine` seam between backends, and everything around it
//! that is shared by all backends (pre-processing, the whole-frame detector).

pub mod detector;
pub mod model;
pub mod preprocess;
pub mod tiling;
pub mod tract;

use std::path::PathBuf;

use serde::Deserialize;

/// Model family: decides the decoder and the pre-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// DBNet text detection (PP-OCR det): a probability map in, text quads out.
    #[default]
    Db,
    /// YOLO object detection (not in this version).
    Yolo,
    /// Image classification (not in this version).
    Classify,
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Pure-Rust CPU engine (tract).
    #[default]
    Cpu,
    /// TensorRT FP16 engine (Jetson / NVIDIA GPUs; needs the `tensorrt` feature).
    Tensorrt,
}

impl Backend {
    /// Name reported in messages and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Cpu => "tract-cpu",
            Backend::Tensorrt => "tensorrt",
        }
    }
}

/// `[model]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// ONNX file; relative paths are relative to the config file.
    pub path: PathBuf,
    /// Model family.
    #[serde(default)]
    pub family: Family,
    /// Backend.
    #[serde(default)]
    pub backend: Backend,
    /// Class labels, by class id.
    #[serde(default = "default_labels")]
    pub labels: Vec<String>,
    /// Whole-frame mode: the longest side fed to the model (multiple of 32).
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    /// Frames inferred at once, each on its own thread with its own engine
    /// state. Default: one per CPU core (measured faster than tract's
    /// multithreaded matmul on this model; see README).
    #[serde(default)]
    pub workers: Option<usize>,
}

fn default_labels() -> Vec<String> {
    vec!["text".to_string()]
}

fn default_max_side() -> u32 {
    960
}

impl ModelConfig {
    /// Problems as (key within `[model]`, reason).
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => out.push(("path", format!("{} is not a file", self.path.display()))),
            Err(e) => out.push((
                "path",
                format!(
                    "cannot open {} ({e}); fetch the default model with engines/fetch-models.sh or fix the path",
                    self.path.display()
                ),
            )),
        }
        if self.family != Family::Db {
            out.push((
                "family",
                format!(
                    "family {:?} is not supported by this version yet; use family = \"db\"",
                    format!("{:?}", self.family).to_lowercase()
                ),
            ));
        }
        if self.backend == Backend::Tensorrt {
            out.push((
                "backend",
                "backend \"tensorrt\" is not available in this build (CPU only); use backend = \"cpu\"".into(),
            ));
        }
        if self.labels.is_empty() {
            out.push((
                "labels",
                "must name at least one label, e.g. [\"text\"]".into(),
            ));
        }
        if self.max_side < 32 || self.max_side % 32 != 0 || self.max_side > 8192 {
            out.push((
                "max_side",
                format!(
                    "{} is not a multiple of 32 between 32 and 8192; try 960",
                    self.max_side
                ),
            ));
        }
        if self.workers == Some(0) {
            out.push((
                "workers",
                "must be at least 1 (or left out for one per core)".into(),
            ));
        }
        out
    }

    /// Worker threads to use.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

/// A batch of images as one NCHW float tensor.
#[derive(Debug, Clone)]
pub struct TensorBatch {
    /// `[n, c, h, w]`.
    pub shape: [usize; 4],
    /// Row-major values, `n*c*h*w` of them.
    pub data: Vec<f32>,
}

/// The first output of a model run.
#[derive(Debug, Clone)]
pub struct Outputs {
    /// Output shape, e.g. `[1, 1, h, w]` for DB.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub data: Vec<f32>,
}

/// What an engine accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// Input tensor name in the model.
    pub name: String,
    /// `Some((h, w))` when the model has a fixed input size.
    pub fixed_hw: Option<(usize, usize)>,
    /// Largest batch the engine runs at once.
    pub max_batch: usize,
}

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model file could not be read, parsed or optimised.
    #[error("cannot load model {path}: {reason}; check that it is a valid ONNX file (engines/fetch-models.sh fetches the default)")]
    Load {
        /// Model path.
        path: PathBuf,
        /// Underlying error.
        reason: String,
    },
    /// A run failed.
    #[error("inference failed on a {shape:?} input: {reason}")]
    Run {
        /// Input shape.
        shape: [usize; 4],
        /// Underlying error.
        reason: String,
    },
}

/// One backend. Tiling, pre- and post-processing, budget and cache keys live
/// outside it and are shared.
pub trait Engine: Send {
    /// What the engine accepts.
    fn input_spec(&self) -> &InputSpec;
    /// Runs one batch. Takes the batch by value so a backend can hand the
    /// buffer to its runtime without copying it.
    fn run(&mut self, batch: TensorBatch) -> Result<Outputs, InferError>;
}
