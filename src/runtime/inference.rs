//! Inference set-up from a configuration: the memory plan, the model
//! loaded and warmed, the detector's settings. Shared by `run`, `detect`,
//! `check-config`, reloads and the TensorRT start-up, so none of them reach
//! into the daemon for it.

use crate::config::Config;
use crate::infer::budget::MemoryPlan;
use crate::infer::detector::DetectorSettings;
use crate::infer::model::LoadedModel;
use crate::infer::onnxruntime::OrtModel;
use crate::infer::preprocess::whole_frame_size;
use crate::infer::tract::use_multithreaded_matmul;
use crate::infer::Backend;

/// Detector settings derived from the configuration, its memory plan and the
/// loaded model. Labels from the config are re-resolved, so a reload can
/// rename classes; their count must still match the model.
pub fn detector_settings(
    config: &Config,
    max_pixels: u64,
    model: &LoadedModel,
) -> Result<DetectorSettings, String> {
    let labels = match crate::postprocess::labels::resolve(
        &config.model.labels,
        config.model.labels_file.as_deref(),
        &crate::postprocess::labels::no_metadata,
    )? {
        Some((labels, _)) => labels,
        None => model.labels.clone(),
    };
    if labels.len() != model.labels.len() {
        return Err(format!(
            "model.labels: {} labels given, the model has {} classes",
            labels.len(),
            model.labels.len()
        ));
    }
    let allowed = crate::postprocess::labels::allowed(&config.decode.classes, &labels)
        .map_err(|e| format!("decode.classes: {e}"))?;
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
        .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.reason))?;
    crate::infer::budget::release_large_buffers();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if plan.workers == 1 && cores > 1 {
        use_multithreaded_matmul(cores);
    }
    // The shape most frames will use is optimised now: a broken model fails
    // at start-up, and the first frame is fast.
    let mut model = LoadedModel::load(&config.model, warm_shape(config))?;
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

/// ONNX Runtime for `model`, or why not, in one line.
fn open_onnxruntime(
    config: &Config,
    model: &LoadedModel,
    threads: usize,
) -> Result<OrtModel, String> {
    let library = crate::infer::onnxruntime::library::locate(
        config.model.onnxruntime_library.as_deref(),
        &config.model.path,
    )?;
    let runtime = crate::infer::onnxruntime::engine::open(&library)?;
    OrtModel::load(
        runtime,
        &config.model.path,
        model.tract.input_spec().clone(),
        threads,
    )
    .map_err(|e| e.to_string())
}

/// The NCHW input of a 1080p frame, the most common one, tiled or whole.
pub fn warm_shape(config: &Config) -> [usize; 4] {
    let side = config.model.max_side;
    let (w, _) = whole_frame_size(1920, 1080, side);
    let tiled = if config.model.family == crate::infer::Family::Db {
        config.tiling.enabled()
    } else {
        config.tiling.tiles_frame(w as f64 / 1920.0)
    };
    if tiled {
        let plan = crate::infer::tiling::TilePlan::new(1920, 1080, &config.tiling);
        let (h, w) = plan.shapes()[0];
        [config.tiling.batch as usize, 3, h as usize, w as usize]
    } else {
        let (w, h) = whole_frame_size(16 * side, 9 * side, side);
        [1, 3, h as usize, w as usize]
    }
}
