//! Post-processing: decoders turn raw model outputs into detections in
//! frame pixels (`[decode]` in the configuration holds their thresholds;
//! "decode" elsewhere means decoding image files).

pub(crate) mod classify;
mod config;
pub mod db;
pub(crate) mod labels;
pub(crate) mod merge;
pub(crate) mod placement;
pub(crate) mod yolo;

pub use classify::ClassifyHead;
pub use config::DecodeConfig;
pub use placement::Placement;
pub use yolo::YoloHead;

use serde::{Deserialize, Serialize};

/// A model output that does not fit its family: the shape is wrong, the
/// labels do not match its classes, or a run gave too few values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// Not a shape the family reads.
    #[error("{family} must output {expected}{with}; this one gives {shape:?}. {hint}")]
    Layout {
        /// "a YOLO model", "a classifier".
        family: &'static str,
        /// The shapes it reads.
        expected: &'static str,
        /// What the labels add, or nothing.
        with: String,
        /// The shape found.
        shape: Vec<usize>,
        /// What to check.
        hint: &'static str,
    },
    /// The model scores a different number of classes than labels are given.
    #[error("the model scores {classes} classes ({shape:?}) but {labels} labels are given; give one label per class")]
    LabelCount {
        /// Classes in the output.
        classes: usize,
        /// The output's shape.
        shape: Vec<usize>,
        /// Labels given.
        labels: usize,
    },
    /// A run gave fewer values than the layout needs.
    #[error("the {what} output has {got} values, {want} were expected")]
    Short {
        /// "YOLO", "classifier".
        what: &'static str,
        /// Values given.
        got: usize,
        /// Values needed.
        want: usize,
    },
}

/// Model family: decides the decoder and the pre-processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// DBNet text detection (PP-OCR det): a probability map in, text quads out.
    #[default]
    Db,
    /// YOLO object detection: YOLOv5 (`1×N×(5+C)`) or YOLOv8/v11 (`1×(4+C)×N`)
    /// outputs, letterboxed input.
    Yolo,
    /// Image classification: logits or probabilities, top-k labels.
    Classify,
}

impl Family {
    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Family::Db => "db",
            Family::Yolo => "yolo",
            Family::Classify => "classify",
        }
    }
}

/// One thing found in a frame, in original-frame pixels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Class label.
    pub label: String,
    /// Class id (index into the model's labels).
    pub class_id: u32,
    /// Confidence in [0, 1].
    pub score: f32,
    /// Axis-aligned box `[x1, y1, x2, y2]`.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// Corner points, clockwise from top-left, for rotated text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quad: Option<[[f32; 2]; 4]>,
    /// What a second model read in the box (`[read]`), when it said.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub read: Option<Read>,
}

/// The text read in a detection's box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Read {
    /// The text, as published (a `known` spelling when one was near).
    pub text: String,
    /// Mean probability of the characters read, in [0, 1].
    pub text_score: f32,
    /// What the model read, when a `known` spelling replaced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_read_as: Option<String>,
}

impl Detection {
    /// A detection from a quad; the box is the quad's bounds.
    pub fn from_quad(label: &str, class_id: u32, score: f32, quad: [[f32; 2]; 4]) -> Detection {
        let xs = quad.map(|p| p[0]);
        let ys = quad.map(|p| p[1]);
        let min = |v: [f32; 4]| v.into_iter().fold(f32::MAX, f32::min);
        let max = |v: [f32; 4]| v.into_iter().fold(f32::MIN, f32::max);
        Detection {
            label: label.to_string(),
            class_id,
            // Three decimals is all a subscriber can use; it keeps payloads short.
            score: (score * 1000.0).round() / 1000.0,
            bbox: [min(xs), min(ys), max(xs), max(ys)],
            quad: Some(quad),
            read: None,
        }
    }
}
