//! The `[decode]` section, shared by every model family.

use crate::base::issue::Issue;
use serde::Deserialize;

/// `[decode]` section: post-processing for every family. DB keys apply to
/// `family = "db"`, box keys to `"yolo"`, `top_k` to `"classify"`;
/// `score_threshold` to both `yolo` and `classify`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    /// Probability above which a pixel is text.
    #[serde(default = "d_threshold")]
    pub threshold: f32,
    /// Mean probability a box needs to be kept.
    #[serde(default = "d_box_threshold")]
    pub box_threshold: f32,
    /// How far boxes are grown: distance = area × ratio / perimeter.
    #[serde(default = "d_unclip")]
    pub unclip_ratio: f32,
    /// At most this many regions are examined per map.
    #[serde(default = "d_max_candidates")]
    pub max_candidates: usize,
    /// Dilate the binary map by 2×2 before finding regions (joins broken strokes).
    #[serde(default = "d_dilation")]
    pub use_dilation: bool,
    /// Box and class scores at or below this are dropped. Default 0.25 for
    /// `yolo` (Ultralytics'), 0 for `classify` (top-k is always reported).
    #[serde(default)]
    pub score_threshold: Option<f32>,
    /// Boxes of one class overlapping more than this IoU are one object (`yolo`).
    #[serde(default = "d_iou")]
    pub iou_threshold: f32,
    /// At most this many boxes per frame, best first (`yolo`).
    #[serde(default = "d_max_detections")]
    pub max_detections: usize,
    /// Only these labels are reported; empty reports every class (`yolo`, `classify`).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Classes reported per frame, best first (`classify`).
    #[serde(default = "d_top_k")]
    pub top_k: usize,
}

fn d_threshold() -> f32 {
    0.3
}
fn d_box_threshold() -> f32 {
    0.5
}
fn d_unclip() -> f32 {
    1.6
}
fn d_max_candidates() -> usize {
    1000
}
fn d_dilation() -> bool {
    true
}
fn d_iou() -> f32 {
    0.45
}
fn d_max_detections() -> usize {
    300
}
fn d_top_k() -> usize {
    5
}

impl Default for DecodeConfig {
    fn default() -> Self {
        DecodeConfig {
            threshold: d_threshold(),
            box_threshold: d_box_threshold(),
            unclip_ratio: d_unclip(),
            max_candidates: d_max_candidates(),
            use_dilation: d_dilation(),
            score_threshold: None,
            iou_threshold: d_iou(),
            max_detections: d_max_detections(),
            classes: Vec::new(),
            top_k: d_top_k(),
        }
    }
}

impl DecodeConfig {
    /// The score threshold for `family`.
    pub fn score_threshold_for(&self, family: super::Family) -> f32 {
        self.score_threshold.unwrap_or(match family {
            super::Family::Classify => 0.0,
            _ => 0.25,
        })
    }

    /// Problems, keyed within `[decode]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let unit = |v: f32| v > 0.0 && v < 1.0;
        if !unit(self.threshold) {
            out.push(Issue::new(
                "threshold",
                format!(
                    "{} is not between 0 and 1 (exclusive); RapidOCR uses 0.3",
                    self.threshold
                ),
            ));
        }
        if !unit(self.box_threshold) {
            out.push(Issue::new(
                "box_threshold",
                format!(
                    "{} is not between 0 and 1 (exclusive); RapidOCR uses 0.5",
                    self.box_threshold
                ),
            ));
        }
        if !(self.unclip_ratio > 0.0 && self.unclip_ratio <= 10.0) {
            out.push(Issue::new(
                "unclip_ratio",
                format!("{} is not in (0, 10]; RapidOCR uses 1.6", self.unclip_ratio),
            ));
        }
        if self.max_candidates == 0 {
            out.push(Issue::new(
                "max_candidates",
                "must be at least 1; RapidOCR uses 1000",
            ));
        }
        if let Some(t) = self.score_threshold.filter(|t| !(0.0..1.0).contains(t)) {
            out.push(Issue::new(
                "score_threshold",
                format!("{t} is not in [0, 1); Ultralytics uses 0.25"),
            ));
        }
        if !(self.iou_threshold > 0.0 && self.iou_threshold <= 1.0) {
            out.push(Issue::new(
                "iou_threshold",
                format!(
                    "{} is not in (0, 1]; Ultralytics uses 0.45",
                    self.iou_threshold
                ),
            ));
        }
        if self.max_detections == 0 {
            out.push(Issue::new("max_detections", "must be at least 1; try 300"));
        }
        if self.top_k == 0 {
            out.push(Issue::new("top_k", "must be at least 1; try 5"));
        }
        out
    }
}
