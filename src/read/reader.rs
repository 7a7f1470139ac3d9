//! The recognizer on a frame's crops: cut, batched by width, run, decoded,
//! filtered, written into the detections.

use std::sync::Arc;

use image::RgbImage;

use super::config::{ReadConfig, BATCH_COLUMNS};
use super::crop::{rectify, Crop, LINE_HEIGHT};
use super::ctc::{decode, Dictionary, DictionaryError};
use super::filters::Filters;
use crate::infer::detector::SecondStage;
use crate::infer::{Engine, EngineFactory, InferError, TensorBatch};
use crate::postprocess::{Detection, Read};

/// PP-OCR pads every batch to at least 320 columns (its training width):
/// short words read better with the room.
const MIN_WIDTH: u32 = 320;

/// Why the recognizer cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The model does not load or does not run.
    #[error("{0}")]
    Model(#[from] InferError),
    /// Its dictionary does not fit it.
    #[error("{0}")]
    Dictionary(#[from] DictionaryError),
    /// Its output is not `[batch, steps, classes]`.
    #[error("the recognizer's output is {0:?}; a CTC recognizer gives [batch, steps, classes]")]
    Output(Vec<usize>),
}

/// The loaded recognizer, shared by every worker.
pub struct ReadModel {
    engines: Arc<dyn EngineFactory>,
    dict: Dictionary,
    classes: usize,
    filters: Filters,
    labels: Vec<String>,
    batch: usize,
    max_width: u32,
    width_step: u32,
}

impl ReadModel {
    /// The recognizer of `cfg` on `engines`, its dictionary from `metadata`
    /// (the model's `character`) or `keys_file`, checked by one run.
    /// `width_step` rounds batch widths up (tract plans each shape once).
    pub fn new(
        cfg: &ReadConfig,
        engines: Arc<dyn EngineFactory>,
        metadata: Option<String>,
        width_step: u32,
    ) -> Result<ReadModel, ReadError> {
        let mut dict = match (&cfg.keys_file, metadata) {
            (Some(path), _) => Dictionary::from_file(path)?,
            (None, Some(text)) => Dictionary::from_lines(&text),
            (None, None) => return Err(DictionaryError::Missing.into()),
        };
        let mut engine = engines.engine()?;
        let probe = engine.run(TensorBatch {
            shape: [1, 3, LINE_HEIGHT as usize, MIN_WIDTH as usize],
            data: vec![0.0; 3 * (LINE_HEIGHT * MIN_WIDTH) as usize],
        })?;
        let classes = match probe.shape.as_slice() {
            [1, _, c] => *c,
            _ => return Err(ReadError::Output(probe.shape)),
        };
        dict.fit(classes)?;
        Ok(ReadModel {
            engines,
            dict,
            classes,
            filters: Filters {
                min_score: cfg.min_score,
                pattern: cfg
                    .pattern
                    .as_deref()
                    .and_then(|p| regex::Regex::new(p).ok()),
                known: cfg.known.clone(),
                max_distance: cfg.max_distance,
            },
            labels: cfg.labels.clone(),
            batch: cfg.batch.max(1),
            max_width: cfg.max_width.max(LINE_HEIGHT),
            width_step: width_step.max(1),
        })
    }

    /// Characters in its dictionary.
    pub fn characters(&self) -> usize {
        self.dict.len()
    }

    /// A worker's reader (its own engine).
    pub fn reader(self: &Arc<Self>) -> Result<Reader, InferError> {
        Ok(Reader {
            model: self.clone(),
            engine: self.engines.engine()?,
        })
    }

    /// A worker's reader, as the detector runs it.
    pub fn stage(self: &Arc<Self>) -> Result<Box<dyn SecondStage>, InferError> {
        Ok(Box::new(self.reader()?))
    }
}

/// One worker's recognizer.
pub struct Reader {
    model: Arc<ReadModel>,
    engine: Box<dyn Engine>,
}

impl Reader {
    /// Reads the boxes of `detections` (frame pixels) in `image` (the frame
    /// as decoded, `frame` its full size). Returns the crops run.
    pub fn read(
        &mut self,
        image: &RgbImage,
        frame: (u32, u32),
        detections: &mut [Detection],
    ) -> Result<usize, InferError> {
        let m = &*self.model;
        let sx = image.width() as f32 / frame.0.max(1) as f32;
        let sy = image.height() as f32 / frame.1.max(1) as f32;
        let mut crops: Vec<(usize, Crop)> = Vec::new();
        for (i, d) in detections.iter().enumerate() {
            if !m.labels.is_empty() && !m.labels.contains(&d.label) {
                continue;
            }
            let [x1, y1, x2, y2] = d.bbox;
            let quad = d
                .quad
                .unwrap_or([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
                .map(|[x, y]| [x * sx, y * sy]);
            if let Some(c) = rectify(image, quad, m.max_width) {
                crops.push((i, c));
            }
        }
        // Lines of like length share a batch, so little of it is padding.
        crops.sort_by(|a, b| a.1.ratio.total_cmp(&b.1.ratio));
        let run = crops.len();
        for chunk in batches(&crops, m.batch) {
            let widest = chunk
                .iter()
                .map(|(_, c)| c.image.width())
                .max()
                .unwrap_or(1);
            let width = widest
                .max(MIN_WIDTH)
                .div_ceil(m.width_step)
                .saturating_mul(m.width_step)
                .min(m.max_width.max(MIN_WIDTH));
            let out = self.engine.run(batch(chunk, width))?;
            let (n, steps, classes) = match out.shape.as_slice() {
                [n, t, c] if *n == chunk.len() && *c == m.classes => (*n, *t, *c),
                other => {
                    return Err(InferError::Run {
                        shape: [chunk.len(), 3, LINE_HEIGHT as usize, width as usize],
                        reason: format!(
                            "the recognizer gave {other:?}, not [{}, steps, {}]",
                            chunk.len(),
                            m.classes
                        ),
                    })
                }
            };
            for (k, (i, _)) in chunk.iter().enumerate().take(n) {
                let seq = &out.data[k * steps * classes..(k + 1) * steps * classes];
                let got = decode(seq, classes, &m.dict);
                detections[*i].read = m.filters.accept(&got.text, got.score).map(|a| Read {
                    text: a.text,
                    text_score: (got.score * 1000.0).round() / 1000.0,
                    text_read_as: a.read_as,
                });
            }
        }
        Ok(run)
    }
}

impl SecondStage for Reader {
    fn apply(
        &mut self,
        image: &RgbImage,
        frame: (u32, u32),
        detections: &mut [Detection],
    ) -> Result<usize, InferError> {
        self.read(image, frame, detections)
    }
}

/// Runs of at most `batch` crops (sorted by width) and at most
/// `BATCH_COLUMNS` columns once padded to the widest: the runtime's largest
/// activation, and ONNX Runtime's arena, follow a run's pixels, so a page of
/// long lines runs them a few at a time.
fn batches(crops: &[(usize, Crop)], batch: usize) -> Vec<&[(usize, Crop)]> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in 1..=crops.len() {
        let widest = crops[end - 1].1.image.width().max(MIN_WIDTH) as usize;
        let n = end - start;
        if n > 1 && (n > batch || n * widest > BATCH_COLUMNS) {
            out.push(&crops[start..end - 1]);
            start = end - 1;
        }
    }
    if start < crops.len() {
        out.push(&crops[start..]);
    }
    out
}

/// `[n, 3, 48, width]`, each crop normalised as PP-OCR does ((v/255 - 0.5)
/// / 0.5) and padded with zeros on the right.
fn batch(chunk: &[(usize, Crop)], width: u32) -> TensorBatch {
    let (h, w) = (LINE_HEIGHT as usize, width as usize);
    let mut data = vec![0f32; chunk.len() * 3 * h * w];
    for (k, (_, crop)) in chunk.iter().enumerate() {
        let cw = (crop.image.width() as usize).min(w);
        for (x, y, px) in crop.image.enumerate_pixels() {
            let (x, y) = (x as usize, y as usize);
            if x >= cw {
                continue;
            }
            for c in 0..3 {
                data[((k * 3 + c) * h + y) * w + x] = px[c] as f32 / 127.5 - 1.0;
            }
        }
    }
    TensorBatch {
        shape: [chunk.len(), 3, h, w],
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(w: u32) -> (usize, Crop) {
        (
            0,
            Crop {
                image: RgbImage::new(w, LINE_HEIGHT),
                ratio: w as f32 / LINE_HEIGHT as f32,
            },
        )
    }

    #[test]
    fn short_lines_run_six_at_a_time_and_long_ones_a_few() {
        let crops: Vec<_> = [100, 200, 300, 300, 320, 320, 320, 600, 700, 1900, 1920]
            .into_iter()
            .map(crop)
            .collect();
        let sizes: Vec<usize> = batches(&crops, 6).iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![6, 3, 2], "{sizes:?}");
        for b in batches(&crops, 6) {
            let widest = b
                .iter()
                .map(|(_, c)| c.image.width().max(MIN_WIDTH))
                .max()
                .unwrap();
            assert!(b.len() == 1 || b.len() * widest as usize <= BATCH_COLUMNS);
        }
        let one: Vec<_> = [5000].into_iter().map(crop).collect();
        assert_eq!(
            batches(&one, 6).len(),
            1,
            "a crop wider than a run still runs"
        );
        assert!(batches(&[], 6).is_empty());
    }
}
