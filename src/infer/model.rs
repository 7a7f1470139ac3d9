//! Loads the configured model once per process and identifies it.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::tract::TractModel;
use super::{Family, InferError, ModelConfig};
use crate::postprocess::classify::ClassifyHead;
use crate::postprocess::labels::{self, LabelOrigin};
use crate::postprocess::yolo::YoloHead;

/// How the model's output is read, found from its shape at load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A DB probability map.
    Db,
    /// YOLO boxes.
    Yolo(YoloHead),
    /// Class scores.
    Classify(ClassifyHead),
}

impl std::fmt::Display for Head {
    /// In the config's words: the family, then what the output holds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Head::Db => f.write_str("db (a text probability map)"),
            Head::Yolo(h) => write!(
                f,
                "yolo ({} layout, {} classes, {} candidates)",
                match h.layout {
                    crate::postprocess::yolo::YoloLayout::V5 => "YOLOv5 [N, 5+C]",
                    crate::postprocess::yolo::YoloLayout::V8 => "YOLOv8 [4+C, N]",
                },
                h.classes,
                h.candidates
            ),
            Head::Classify(h) => write!(f, "classify ({} classes)", h.classes),
        }
    }
}

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
    /// How outputs are read.
    pub head: Head,
    /// Labels by class id.
    pub labels: Vec<String>,
    /// Where the labels came from.
    pub label_origin: LabelOrigin,
    /// Input `(width, height)` for letterboxed and cropped families (YOLO,
    /// classify): the ONNX file's fixed size, or `model.input`.
    pub input: (u32, u32),
    /// The CPU backend frames start on: tract, or ONNX Runtime once
    /// [`LoadedModel::use_engines`] installs it.
    pub engines: std::sync::Arc<dyn super::EngineFactory>,
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
        let layout = |reason: String| InferError::Layout {
            path: cfg.path.clone(),
            reason,
        };
        let metadata = |key: &str| tract.metadata(key);
        let resolved = labels::resolve(&cfg.labels, cfg.labels_file.as_deref(), &metadata)
            .map_err(|e| layout(e.to_string()))?;
        let count = resolved.as_ref().map(|(l, _)| l.len());
        let input = match (tract.input_spec().fixed_hw, cfg.family) {
            (_, Family::Db) => (warm[3] as u32, warm[2] as u32),
            (Some((h, w)), _) => {
                let fixed = (w as u32, h as u32);
                if cfg.input.is_some() && cfg.default_input() != fixed {
                    let (iw, ih) = cfg.default_input();
                    return Err(layout(format!(
                        "model.input is {iw}x{ih} but the model's input is fixed at {w}x{h}; remove model.input or make it match"
                    )));
                }
                fixed
            }
            (None, _) => cfg.default_input(),
        };
        // A fixed-input file is checked at its own size whatever the family,
        // so a YOLO export left at `family = "db"` gets the layout message.
        let shape = match (cfg.family, tract.input_spec().fixed_hw) {
            (Family::Db, None) => {
                let [n, c, h, w] = warm;
                [n.min(tract.input_spec().max_batch), c, h, w]
            }
            (Family::Db, Some((h, w))) => [1, 3, h, w],
            _ => [1, 3, input.1 as usize, input.0 as usize],
        };
        let out = tract.output_shape(shape)?;
        let head = match cfg.family {
            Family::Db => match out.as_slice() {
                [_, 1, _, _] => Head::Db,
                other => {
                    return Err(layout(format!(
                        "a DB (text) model must output [N, 1, H, W]; this one gives {other:?}. Set model.family = \"yolo\" or \"classify\" for box or class outputs"
                    )))
                }
            },
            Family::Yolo => Head::Yolo(YoloHead::from_shape(&out, count).map_err(|e| layout(e.to_string()))?),
            Family::Classify => {
                Head::Classify(ClassifyHead::from_shape(&out, count).map_err(|e| layout(e.to_string()))?)
            }
        };
        let classes = match head {
            Head::Db => 1,
            Head::Yolo(h) => h.classes,
            Head::Classify(h) => h.classes,
        };
        let (labels, label_origin) = match resolved {
            Some(found) => found,
            None if head == Head::Db => (vec!["text".to_string()], LabelOrigin::Generated),
            None => (
                (0..classes).map(|c| format!("class{c}")).collect(),
                LabelOrigin::Generated,
            ),
        };
        let name = cfg
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        Ok(LoadedModel {
            engines: std::sync::Arc::new(tract.clone()),
            tract,
            info: ModelInfo {
                name,
                sha256,
                // The model loaded here runs on the CPU; a TensorRT engine
                // replaces it in the workers when ready (see EngineSlot).
                backend: super::Backend::Cpu.label(),
            },
            head,
            labels,
            label_origin,
            input,
        })
    }
}

impl LoadedModel {
    /// Frames run on `engines` instead of tract. Tract's optimised plans are
    /// dropped (the parsed model stays, for TensorRT's checks).
    pub fn use_engines(&mut self, engines: std::sync::Arc<dyn super::EngineFactory>) {
        self.info.backend = engines.label();
        self.engines = engines;
        self.tract.forget_plans();
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
