//! `[read]`: a second model run on the crops of the detector's boxes.

use std::path::PathBuf;

use serde::Deserialize;

use crate::base::issue::Issue;

/// Columns in one run of the recognizer (6 crops of 640, 2 of 1920): what
/// bounds its memory, whatever the lines' lengths.
pub(crate) const BATCH_COLUMNS: usize = 6 * 640;

/// The `[read]` section: a PP-OCR-style CTC recognizer and what to keep.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// The recognizer's ONNX file (`engines/fetch-models.sh` fetches
    /// PP-OCRv4's as `engines/ppocr-rec-v4.onnx`).
    pub path: PathBuf,
    /// The dictionary, one character per line, when the model has no
    /// `character` metadata (PaddleOCR's exports have it).
    #[serde(default)]
    pub keys_file: Option<PathBuf>,
    /// Labels whose boxes are read; empty: every box.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Reads whose mean character probability is lower are not said.
    #[serde(default = "default_min_score")]
    pub min_score: f32,
    /// A regular expression the whole read must match (e.g. a container
    /// code `^[A-Z]{4}\d{7}$`); a read that does not is not said.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Spellings to expect: a read within `max_distance` edits of one is
    /// published as that spelling, with what was read in `text_read_as`.
    #[serde(default)]
    pub known: Vec<String>,
    /// Edits a read may be from a `known` spelling.
    #[serde(default = "default_max_distance")]
    pub max_distance: usize,
    /// Crops run together in one model call.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Widest crop in pixels at the model's 48-pixel height; longer lines
    /// are squeezed into it (1920: a 40:1 line).
    #[serde(default = "default_max_width")]
    pub max_width: u32,
}

fn default_min_score() -> f32 {
    0.5
}

fn default_max_distance() -> usize {
    1
}

fn default_batch() -> usize {
    6
}

fn default_max_width() -> u32 {
    1920
}

impl ReadConfig {
    /// Problems, keyed within `[read]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => out.push(Issue::new(
                "path",
                format!("{} is not a file", self.path.display()),
            )),
            Err(e) => out.push(Issue::new(
                "path",
                format!(
                    "{} cannot be read ({e}); engines/fetch-models.sh fetches PP-OCRv4's recognizer as ppocr-rec-v4.onnx",
                    self.path.display()
                ),
            )),
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            out.push(Issue::new(
                "min_score",
                format!("{} is not between 0 and 1", self.min_score),
            ));
        }
        if let Some(p) = &self.pattern {
            if let Err(e) = regex::Regex::new(p) {
                out.push(Issue::new(
                    "pattern",
                    format!(
                        "is not a regular expression: {}",
                        crate::base::text::one_line(&e.to_string())
                    ),
                ));
            }
        }
        if !(1..=64).contains(&self.batch) {
            out.push(Issue::new(
                "batch",
                format!("{} is outside 1..=64; try 6", self.batch),
            ));
        }
        if self.max_width < 48 {
            out.push(Issue::new(
                "max_width",
                format!(
                    "{} is narrower than one 48-pixel line is high",
                    self.max_width
                ),
            ));
        }
        out
    }

    /// Bytes the recognizer and its batch take, for the memory plan: its
    /// weights as the runtime holds them (tract keeps up to four optimised
    /// shapes, each with its own packed weights) and one batch of the widest
    /// crops, as input and as the largest activation. Measured on a page of
    /// 43 lines on tract: 34 MiB more peak than without `[read]`.
    pub fn planned_bytes(&self, model_bytes: u64) -> u64 {
        let columns = (BATCH_COLUMNS as u64).max(self.max_width as u64);
        let batch_pixels = 48 * columns;
        model_bytes * 4 + batch_pixels * 4 * 4
    }
}
