//! Inference: the `Engine` seam between backends, and everything around it
//! that is shared by all backends (pre-processing, the whole-frame detector).

use crate::base::issue::Issue;
pub(crate) mod budget;
pub(crate) mod choice;
pub(crate) mod decoded;
pub(crate) mod detector;
pub(crate) mod grey;
pub(crate) mod guided;
pub(crate) mod model;
pub mod onnxruntime;
pub(crate) mod preprocess;
pub(crate) mod scaled_decode;
pub(crate) mod shapes;
pub mod tensorrt;
pub(crate) mod tile_reuse;
pub(crate) mod tiling;
pub(crate) mod tract;

use std::path::PathBuf;

use serde::Deserialize;

// The family lives with the decoders it chooses; named here too, as the
// model's configuration uses it.
pub use crate::postprocess::Family;
pub use detector::{Detector, DetectorSettings, FrameResult, Timing};
pub use model::{LoadedModel, ModelInfo};
pub use preprocess::{decode_file, whole_frame_size, Preprocessor};
pub use shapes::{profile, warm};
pub use tiling::{TilePlan, TilingConfig, TilingMode};
pub use tract::TractModel;

/// `input = { width = 640, height = 640 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSize {
    /// Model input width.
    pub width: u32,
    /// Model input height.
    pub height: u32,
}

/// Which engine runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// The fastest this machine can run: TensorRT, else ONNX Runtime, else
    /// tract (`choice.rs`); resolved when the configuration is read.
    #[default]
    Auto,
    /// Pure-Rust CPU engine (tract).
    Cpu,
    /// TensorRT FP16 engine (Jetson / NVIDIA GPUs; needs the `tensorrt` feature).
    Tensorrt,
    /// ONNX Runtime on the CPU, from a library found at run time; tract
    /// when there is none.
    Onnxruntime,
}

impl Backend {
    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpu => "cpu",
            Backend::Tensorrt => "tensorrt",
            Backend::Onnxruntime => "onnxruntime",
        }
    }

    /// Name reported in messages and metrics.
    pub fn label(self) -> &'static str {
        match self {
            // Resolved before any engine runs; tract is what it falls to.
            Backend::Auto | Backend::Cpu => "tract-cpu",
            Backend::Tensorrt => "tensorrt",
            Backend::Onnxruntime => onnxruntime::LABEL,
        }
    }
}

/// `[model]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// ONNX file; relative paths are relative to the config file.
    pub path: PathBuf,
    /// Model family.
    #[serde(default)]
    pub family: Family,
    /// Backend: `auto` (default), `cpu` (tract), `onnxruntime`, `tensorrt`.
    #[serde(default)]
    pub backend: Backend,
    /// What `auto` chose and why not a faster engine, in one line (set when
    /// the configuration is read; `None` for a backend named in the file).
    #[serde(skip)]
    pub backend_choice: Option<String>,
    /// `backend = "onnxruntime"`: the `libonnxruntime.so` to open. Default:
    /// found on the usual paths (`infer/onnxruntime/library.rs`).
    #[serde(default)]
    pub onnxruntime_library: Option<PathBuf>,
    /// Class labels, by class id. When empty: `labels_file`, then the ONNX
    /// metadata `names`, then `text` (DB) or `class0…` (others).
    #[serde(default)]
    pub labels: Vec<String>,
    /// A file with one label per line (e.g. `coco.names`).
    #[serde(default)]
    pub labels_file: Option<PathBuf>,
    /// Input size for YOLO and classifier models whose ONNX input is dynamic
    /// (a fixed ONNX input is used as it is). Default 640×640 (YOLO), 224×224
    /// (classify).
    #[serde(default)]
    pub input: Option<InputSize>,
    /// Per-channel mean, RGB, in 0..1 units: input = (v/255 - mean) / std.
    /// Default: 0.5 (DB), 0 (YOLO), ImageNet's (classify).
    #[serde(default)]
    pub mean: Option<[f32; 3]>,
    /// Per-channel standard deviation, RGB, in 0..1 units.
    /// Default: 0.5 (DB), 1 (YOLO), ImageNet's (classify).
    #[serde(default)]
    pub std: Option<[f32; 3]>,
    /// Classify: the centre crop's share of the resized frame's short side
    /// (0.875: resize to 256, crop 224, as torchvision's ImageNet models).
    #[serde(default = "default_crop")]
    pub crop: f32,
    /// Whole-frame mode: the longest side fed to the model (multiple of 32).
    #[serde(default = "default_max_side")]
    pub max_side: u32,
    /// Frames inferred at once, each on its own thread with its own engine
    /// state. Default: one per CPU core (measured faster than tract's
    /// multithreaded matmul on this model; see docs/memory-and-tiling.md).
    #[serde(default)]
    pub workers: Option<usize>,
}

fn default_crop() -> f32 {
    0.875
}

fn default_max_side() -> u32 {
    960
}

impl ModelConfig {
    /// Problems, keyed within `[model]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => out.push(Issue::new("path", format!("{} is not a file", self.path.display()))),
            Err(e) => out.push(Issue::new(
                "path",
                format!(
                    "cannot open {} ({e}); fetch the default model with engines/fetch-models.sh or fix the path",
                    self.path.display()
                ),
            )),
        }
        if let Some(file) = &self.labels_file {
            if self.labels.is_empty() && !file.is_file() {
                out.push(Issue::new(
                    "labels_file",
                    format!(
                        "{} is not a readable file; give one label per line, or list them in labels = [...]",
                        file.display()
                    ),
                ));
            }
        }
        if let Some(InputSize { width, height }) = self.input {
            if !(8..=8192).contains(&width) || !(8..=8192).contains(&height) {
                out.push(Issue::new(
                    "input",
                    format!("{width}x{height} is not between 8 and 8192 on each side; try {{ width = 640, height = 640 }}"),
                ));
            }
        }
        if let Some(std) = self.std {
            if std.iter().any(|v| v.is_nan() || *v <= 0.0) {
                out.push(Issue::new(
                    "std",
                    format!("{std:?} must be positive in every channel"),
                ));
            }
        }
        if !(self.crop > 0.0 && self.crop <= 1.0) {
            out.push(Issue::new(
                "crop",
                format!(
                    "{} is not in (0, 1]; 0.875 is ImageNet's 224-of-256",
                    self.crop
                ),
            ));
        }
        if self.backend == Backend::Tensorrt {
            if let Some(why) = tensorrt::unavailable_reason() {
                out.push(Issue::new("backend", why));
            }
        }
        if let Some(lib) = &self.onnxruntime_library {
            if !lib.is_file() {
                out.push(Issue::new(
                    "onnxruntime_library",
                    format!(
                        "{} is not a file; {}",
                        lib.display(),
                        onnxruntime::library::HOW_TO_GET
                    ),
                ));
            }
        }
        if self.labels.iter().any(|l| l.trim().is_empty()) {
            out.push(Issue::new("labels", "labels must not be empty strings"));
        }
        if self.max_side < 32 || !self.max_side.is_multiple_of(32) || self.max_side > 8192 {
            out.push(Issue::new(
                "max_side",
                format!(
                    "{} is not a multiple of 32 between 32 and 8192; try 960",
                    self.max_side
                ),
            ));
        }
        if self.workers == Some(0) {
            out.push(Issue::new(
                "workers",
                "must be at least 1 (or left out for one per core)",
            ));
        }
        out
    }

    /// Worker threads to use.
    pub fn worker_count(&self) -> usize {
        // One GPU runs one engine at a time; more workers would only hold
        // more copies of it in the Nano's shared memory.
        if self.backend == Backend::Tensorrt {
            return self.workers.unwrap_or(1);
        }
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }
}

impl ModelConfig {
    /// `path` with every other key at its default.
    pub fn new(path: PathBuf) -> ModelConfig {
        ModelConfig {
            path,
            family: Family::default(),
            backend: Backend::default(),
            backend_choice: None,
            onnxruntime_library: None,
            labels: Vec::new(),
            labels_file: None,
            input: None,
            mean: None,
            std: None,
            crop: default_crop(),
            max_side: default_max_side(),
            workers: None,
        }
    }

    /// `(mean, std, bgr)` for this family, with the config's overrides.
    pub fn normalisation(&self) -> ([f32; 3], [f32; 3], bool) {
        let (mean, std, bgr) = match self.family {
            // PP-OCR was trained on OpenCV's BGR frames.
            Family::Db => ([0.5; 3], [0.5; 3], true),
            Family::Yolo => ([0.0; 3], [1.0; 3], false),
            Family::Classify => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], false),
        };
        (self.mean.unwrap_or(mean), self.std.unwrap_or(std), bgr)
    }

    /// Input `(width, height)` when none is fixed by the ONNX file.
    pub fn default_input(&self) -> (u32, u32) {
        match (self.input, self.family) {
            (Some(i), _) => (i.width, i.height),
            (None, Family::Classify) => (224, 224),
            (None, _) => (640, 640),
        }
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
    /// The model's input or output does not fit the configured family.
    #[error("model {path}: {reason}")]
    Layout {
        /// Model path.
        path: PathBuf,
        /// What was found and what is supported.
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

/// Makes engines of one backend, one per worker.
pub trait EngineFactory: Send + Sync {
    /// A fresh engine (its own run state).
    fn engine(&self) -> Result<Box<dyn Engine>, InferError>;
    /// Backend label for messages and metrics, e.g. `tract-cpu`.
    fn label(&self) -> &'static str;
}

impl EngineFactory for tract::TractModel {
    fn engine(&self) -> Result<Box<dyn Engine>, InferError> {
        Ok(Box::new(tract::TractModel::engine(self)?))
    }

    fn label(&self) -> &'static str {
        Backend::Cpu.label()
    }
}

/// The backend workers take engines from. The daemon starts on the CPU
/// while a TensorRT engine builds, then switches here; each worker picks the
/// new backend up before its next frame.
pub struct EngineSlot {
    generation: std::sync::atomic::AtomicU64,
    factory: std::sync::RwLock<std::sync::Arc<dyn EngineFactory>>,
}

impl EngineSlot {
    /// A slot holding `factory`.
    pub fn new(factory: std::sync::Arc<dyn EngineFactory>) -> EngineSlot {
        EngineSlot {
            generation: std::sync::atomic::AtomicU64::new(0),
            factory: std::sync::RwLock::new(factory),
        }
    }

    /// The current factory and its generation.
    pub fn current(&self) -> (u64, std::sync::Arc<dyn EngineFactory>) {
        let f = self
            .factory
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (self.generation.load(std::sync::atomic::Ordering::SeqCst), f)
    }

    /// Generation of the current factory: changes on every switch.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Installs `factory`; returns the label it replaced.
    pub fn switch(&self, factory: std::sync::Arc<dyn EngineFactory>) -> &'static str {
        let mut slot = self.factory.write().unwrap_or_else(|p| p.into_inner());
        let old = slot.label();
        *slot = factory;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        old
    }
}

#[cfg(test)]
mod slot_tests {
    use super::*;
    use std::sync::Arc;

    struct Labelled(tract::TractModel, &'static str);

    impl EngineFactory for Labelled {
        fn engine(&self) -> Result<Box<dyn Engine>, InferError> {
            EngineFactory::engine(&self.0)
        }
        fn label(&self) -> &'static str {
            self.1
        }
    }

    #[test]
    fn a_switch_is_seen_by_generation_and_label_and_its_engines_run() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
        let model = tract::TractModel::load(&path).unwrap();
        let slot = EngineSlot::new(Arc::new(model.clone()));
        let (g0, f0) = slot.current();
        assert_eq!(f0.label(), "tract-cpu");
        let old = slot.switch(Arc::new(Labelled(model, "tensorrt")));
        assert_eq!(old, "tract-cpu");
        let (g1, f1) = slot.current();
        assert_eq!(g1, g0 + 1);
        assert_eq!(f1.label(), "tensorrt");
        let mut engine = f1.engine().unwrap();
        let out = engine
            .run(TensorBatch {
                shape: [1, 3, 64, 64],
                data: vec![0.0; 3 * 64 * 64],
            })
            .unwrap();
        assert_eq!(out.shape, vec![1, 1, 64, 64]);
    }
}
