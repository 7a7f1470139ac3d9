//! Inference set-up from a configuration: the memory plan, the model
//! loaded and warmed, the detector's settings. Shared by `run`, `detect`,
//! `check-config`, reloads and the TensorRT start-up, so none of them reach
//! into the daemon for it.

use crate::base::issue::Issue;
use crate::config::Config;
use crate::infer::budget::MemoryPlan;
use crate::infer::detector::DetectorSettings;
use crate::infer::model::LoadedModel;
use crate::infer::onnxruntime::OrtModel;
use crate::infer::tract::use_multithreaded_matmul;
use crate::infer::{Backend, EngineFactory, InferError, TractModel};
use crate::read::{DictionaryError, ReadError, ReadModel};

/// Why the detector's settings cannot be made from a config and its model.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `model.labels` or `labels_file` cannot be used.
    #[error("{0}")]
    Labels(crate::postprocess::labels::LabelError),
    /// The labels given do not match the model's classes.
    #[error("model.labels: {given} labels given, the model has {classes} classes")]
    Count {
        /// Labels given.
        given: usize,
        /// Classes the model scores.
        classes: usize,
    },
    /// `decode.classes` names something that is not a label.
    #[error("decode.classes: {0}")]
    Classes(crate::postprocess::labels::LabelError),
}

impl SettingsError {
    /// The same problem as the key the operator changes.
    pub fn issue(&self) -> Issue {
        let key = match self {
            SettingsError::Labels(_) | SettingsError::Count { .. } => "model.labels",
            SettingsError::Classes(_) => "decode.classes",
        };
        let full = self.to_string();
        let reason = full
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix(": "))
            .unwrap_or(&full);
        Issue::new(key, reason)
    }
}

/// Detector settings derived from the configuration, its memory plan and the
/// loaded model. Labels from the config are re-resolved, so a reload can
/// rename classes; their count must still match the model.
pub fn detector_settings(
    config: &Config,
    max_pixels: u64,
    model: &LoadedModel,
) -> Result<DetectorSettings, SettingsError> {
    let labels = match crate::postprocess::labels::resolve(
        &config.model.labels,
        config.model.labels_file.as_deref(),
        &crate::postprocess::labels::no_metadata,
    )
    .map_err(SettingsError::Labels)?
    {
        Some((labels, _)) => labels,
        None => model.labels.clone(),
    };
    if labels.len() != model.labels.len() {
        return Err(SettingsError::Count {
            given: labels.len(),
            classes: model.labels.len(),
        });
    }
    let allowed = crate::postprocess::labels::allowed(&config.decode.classes, &labels)
        .map_err(SettingsError::Classes)?;
    Ok(DetectorSettings {
        max_side: config.model.max_side,
        decode: config.decode.clone(),
        head: model.head,
        labels,
        allowed,
        score_threshold: config.decode.score_threshold_for(config.model.family),
        input: model.input,
        crop: config.model.crop,
        normalisation: config.model.normalisation(),
        max_pixels,
        max_pixels_per_byte: config.max_pixels_per_byte,
        tiling: config.tiling.clone(),
    })
}

/// Plans memory, makes big buffers go back to the system when freed, loads
/// the model and, when there is one worker on a multi-core machine, gives
/// tract's matrix products every core instead.
pub fn load_model(config: &Config) -> anyhow::Result<(LoadedModel, MemoryPlan)> {
    let plan = config
        .memory_plan()
        .map_err(|e| Issue::new(e.key, e.reason))?;
    crate::infer::budget::release_large_buffers();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if plan.workers == 1 && cores > 1 {
        use_multithreaded_matmul(cores);
    }
    // The shape most frames will use is optimised now: a broken model fails
    // at start-up, and the first frame is fast.
    let mut model = LoadedModel::load(
        &config.model,
        crate::infer::shapes::warm(&config.model, &config.tiling),
    )
    .map_err(model_issue)?;
    if config.model.backend == Backend::Onnxruntime {
        let threads = (cores / plan.workers.max(1)).max(1);
        match open_onnxruntime(config, &model, threads) {
            Ok(ort) => {
                tracing::info!(
                    "ONNX Runtime {} from {}: {} worker session(s) of {threads} thread(s)",
                    ort.runtime().version,
                    ort.runtime().library.display(),
                    plan.workers
                );
                model.use_engines(std::sync::Arc::new(ort));
            }
            Err(why) => {
                let asked = if config.model.backend_choice.is_some() {
                    "\"auto\" chose ONNX Runtime"
                } else {
                    "\"onnxruntime\""
                };
                tracing::warn!(
                    "model.backend = {asked} but {why}. Serving on tract (pure Rust) instead"
                )
            }
        }
    }
    tracing::info!(
        "model {}: {} classes, labels from {}, input {}x{}",
        model.info.name,
        model.labels.len(),
        model.label_origin,
        model.input.0,
        model.input.1
    );
    Ok((model, plan))
}

/// A model file that does not load, or whose layout does not fit its
/// family, is the operator's `model.path` to change (exit 2); a failed run
/// is not.
fn model_issue(e: InferError) -> anyhow::Error {
    match e {
        InferError::Load { reason, .. } => Issue::new("model.path", reason).into(),
        InferError::Layout { .. } => Issue::new("model.path", e.to_string()).into(),
        InferError::Run { .. } => e.into(),
    }
}

/// ONNX Runtime for `model`, or why not, in one line.
fn open_onnxruntime(
    config: &Config,
    model: &LoadedModel,
    threads: usize,
) -> Result<OrtModel, String> {
    let library = crate::infer::onnxruntime::library::locate(
        config.model.onnxruntime_library.as_deref(),
        &config.model.path,
    )
    .map_err(|e| e.to_string())?;
    let runtime = crate::infer::onnxruntime::engine::open(&library).map_err(|e| e.to_string())?;
    OrtModel::load(
        runtime,
        &config.model.path,
        model.tract.input_spec().clone(),
        threads,
    )
    .map_err(|e| e.to_string())
}

/// The recognizer of `[read]`, on the backend the detector serves on:
/// ONNX Runtime when the detector has it (the process holds one runtime),
/// else tract, which plans each batch shape once, so widths go up in steps.
/// A model that does not load, does not run or whose dictionary does not
/// fit is the operator's `read.path` to change.
pub fn load_reader(
    config: &Config,
    model: &LoadedModel,
    workers: usize,
) -> anyhow::Result<Option<std::sync::Arc<ReadModel>>> {
    let Some(cfg) = &config.read else {
        return Ok(None);
    };
    let issue =
        |e: &dyn std::fmt::Display| Issue::new("read.path", format!("{}: {e}", cfg.path.display()));
    let tract = TractModel::load(&cfg.path).map_err(|e| issue(&e))?;
    let metadata = tract.metadata("character");
    let on_ort = model.engines.label() == crate::infer::onnxruntime::LABEL;
    let (engines, step): (std::sync::Arc<dyn EngineFactory>, u32) = if on_ort {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = (cores / workers.max(1)).max(1);
        let library = crate::infer::onnxruntime::library::locate(
            config.model.onnxruntime_library.as_deref(),
            &config.model.path,
        )
        .map_err(|e| issue(&e))?;
        let runtime = crate::infer::onnxruntime::open(&library).map_err(|e| issue(&e))?;
        let spec = tract.input_spec().clone();
        let ort = OrtModel::load(runtime, &cfg.path, spec, threads).map_err(|e| issue(&e))?;
        (std::sync::Arc::new(ort), 1)
    } else {
        (std::sync::Arc::new(tract), TRACT_WIDTH_STEP)
    };
    let read = ReadModel::new(cfg, engines, metadata, step).map_err(|e| match e {
        ReadError::Dictionary(d) if cfg.keys_file.is_some() => {
            Issue::new("read.keys_file", d.to_string())
        }
        ReadError::Dictionary(d @ DictionaryError::Missing) => {
            Issue::new("read.keys_file", d.to_string())
        }
        e => issue(&e),
    })?;
    tracing::info!(
        "read: {} on {}, {} characters",
        cfg.path.display(),
        if on_ort {
            "onnxruntime-cpu"
        } else {
            "tract-cpu"
        },
        read.characters()
    );
    Ok(Some(std::sync::Arc::new(read)))
}

/// Batch widths on tract: each distinct shape is optimised once (about
/// 0.2 s for PP-OCRv4's recognizer here), so widths go up in steps.
const TRACT_WIDTH_STEP: u32 = 320;

/// The config sections TensorRT reads, out of the whole configuration.
#[cfg(feature = "tensorrt")]
pub fn tensorrt_sections(config: &Config) -> crate::infer::tensorrt::startup::Sections<'_> {
    crate::infer::tensorrt::startup::Sections {
        tensorrt: &config.tensorrt,
        model: &config.model,
        tiling: &config.tiling,
        memory_budget_mb: config.memory_budget_mb,
    }
}
