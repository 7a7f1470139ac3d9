//! Runs one frame through the whole-frame path: decode → resize/normalise →
//! engine → DB decode, timing each stage.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use super::preprocess::{decode_file, whole_frame_size, DecodeError, Preprocessor};
use super::{Engine, InferError};
use crate::decode::db::{self, DbConfig, ProbMap};
use crate::decode::Detection;

/// Milliseconds spent in each stage of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timing {
    /// File decode, resize and normalise.
    pub decode: f64,
    /// Engine run.
    pub infer: f64,
    /// Post-processing.
    pub post: f64,
    /// Everything.
    pub total: f64,
}

/// What one frame produced.
#[derive(Debug, Clone)]
pub struct FrameResult {
    /// Frame width in pixels (after EXIF orientation).
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Detections in frame pixels.
    pub detections: Vec<Detection>,
    /// Stage timings.
    pub timing: Timing,
}

/// Why a frame failed, by stage.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The image could not be decoded.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The engine failed.
    #[error("{0}")]
    Infer(#[from] InferError),
    /// The model output is not what the decoder expects.
    #[error("unexpected model output: {0}")]
    Output(String),
}

impl FrameError {
    /// Pipeline stage that failed, as written to `<name>.error.json`.
    pub fn stage(&self) -> &'static str {
        match self {
            FrameError::Decode(_) => "decode",
            FrameError::Infer(_) => "infer",
            FrameError::Output(_) => "post",
        }
    }
}

/// Settings a detector needs besides its engine.
#[derive(Debug, Clone)]
pub struct DetectorSettings {
    /// Longest side fed to the model.
    pub max_side: u32,
    /// DB thresholds.
    pub decode: DbConfig,
    /// Label for class 0.
    pub label: String,
    /// Most bytes an image decoder may allocate.
    pub max_decode_bytes: u64,
}

/// One worker's detector: owns its engine and reusable buffers.
pub struct Detector {
    engine: Box<dyn Engine>,
    pre: Preprocessor,
    settings: DetectorSettings,
}

impl Detector {
    /// A detector over `engine`.
    pub fn new(engine: Box<dyn Engine>, settings: DetectorSettings) -> Detector {
        Detector {
            engine,
            pre: Preprocessor::new(),
            settings,
        }
    }

    /// Replaces thresholds and sizes without touching the engine.
    pub fn set_settings(&mut self, settings: DetectorSettings) {
        self.settings = settings;
    }

    /// Decodes and detects one image file.
    pub fn detect_file(&mut self, path: &Path) -> Result<FrameResult, FrameError> {
        let start = Instant::now();
        let img = decode_file(path, self.settings.max_decode_bytes)?;
        self.detect_rgb_from(&img, start)
    }

    /// Detects on pixels already decoded.
    pub fn detect_rgb(&mut self, img: &RgbImage) -> Result<FrameResult, FrameError> {
        self.detect_rgb_from(img, Instant::now())
    }

    fn detect_rgb_from(
        &mut self,
        img: &RgbImage,
        start: Instant,
    ) -> Result<FrameResult, FrameError> {
        // Test-only hang, compiled into debug builds only: release binaries,
        // and so every production config, cannot turn it on.
        #[cfg(debug_assertions)]
        if std::env::var_os("EDGEWATCH_TEST_HANG_INFER").is_some() {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
        let (w, h) = whole_frame_size(img.width(), img.height(), self.settings.max_side);
        let tensor = self.pre.to_tensor(img, w, h);
        let t_pre = Instant::now();
        let out = self.engine.run(tensor)?;
        let t_infer = Instant::now();
        let (mh, mw) = match out.shape.as_slice() {
            [1, 1, mh, mw] => (*mh, *mw),
            other => {
                return Err(FrameError::Output(format!(
                    "a DB model must output [1, 1, H, W], this one gave {other:?}; is model.family right?"
                )))
            }
        };
        let detections = db::decode(
            &self.settings.decode,
            ProbMap {
                data: &out.data,
                width: mw,
                height: mh,
            },
            img.width(),
            img.height(),
            &self.settings.label,
        );
        let end = Instant::now();
        let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
        Ok(FrameResult {
            width: img.width(),
            height: img.height(),
            detections,
            timing: Timing {
                decode: ms(start, t_pre),
                infer: ms(t_pre, t_infer),
                post: ms(t_infer, end),
                total: ms(start, end),
            },
        })
    }
}
