//! Runs one frame: decode → (tiles or whole frame) → engine → the family's
//! decoder (DB text with stitched tile maps, YOLO boxes merged across tiles,
//! classifier top-k), timing each stage.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use super::guided;
use super::model::Head;
use super::preprocess::{decode_file_checked, whole_frame_size, DecodeError, Preprocessor};
use super::tile_reuse::{TileCounts, TileReuse};
use super::tiling::{scaled_size, TilePlan, TilingConfig, TilingMode};
use super::{Engine, InferError};
use crate::postprocess::db::{self, ProbMap};
use crate::postprocess::merge::{merge, MergeConfig, MergeStrategy};
use crate::postprocess::placement::{Placement, LETTERBOX_FILL};
use crate::postprocess::yolo::YoloHead;
use crate::postprocess::DecodeConfig;
use crate::postprocess::Detection;

fn no_time(ms: &f64) -> bool {
    *ms == 0.0
}

/// Milliseconds spent in each stage of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Timing {
    /// File decode, resize and normalise.
    pub decode: f64,
    /// Engine run.
    pub infer: f64,
    /// Post-processing.
    pub post: f64,
    /// The second stage on the boxes' crops (`[read]`); left out of
    /// messages when there is none.
    #[serde(skip_serializing_if = "no_time")]
    pub read: f64,
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
    /// The pixels the model was given, when the frame was decoded scaled
    /// down to fit the memory plan (a 400-dpi scan); `None` at full size.
    pub scaled_to: Option<[u32; 2]>,
    /// Detections in frame pixels.
    pub detections: Vec<Detection>,
    /// Stage timings.
    pub timing: Timing,
    /// What the model was given.
    pub work: Work,
}

/// The model's work on one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Work {
    /// Engine calls.
    pub engine_runs: u32,
    /// Pixels of model input (tensor height × width, summed over calls and
    /// batch): what the frame cost the model.
    pub model_pixels: u64,
    /// Tiles run, and tiles whose map was kept (tile reuse).
    pub tiles: TileCounts,
    /// Crops the second stage ran (`[read]`).
    pub crops_read: usize,
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
    /// Longest side fed to the model in whole-frame mode.
    pub max_side: u32,
    /// Post-processing thresholds.
    pub decode: DecodeConfig,
    /// How the model's output is read.
    pub head: Head,
    /// Labels by class id.
    pub labels: Vec<String>,
    /// `allowed[c]`: class `c` is reported (`[decode] classes`).
    pub allowed: Vec<bool>,
    /// Scores at or below this are dropped (YOLO, classify).
    pub score_threshold: f32,
    /// Model input `(width, height)` for YOLO and classify.
    pub input: (u32, u32),
    /// Classify: centre-crop share of the short side.
    pub crop: f32,
    /// `(mean, std, bgr)` input normalisation.
    pub normalisation: ([f32; 3], [f32; 3], bool),
    /// Largest frame decoded at full size (see `budget.rs`).
    pub max_pixels: u64,
    /// Most pixels a file may declare per byte of it.
    pub max_pixels_per_byte: u64,
    /// How frames are cut into tiles.
    pub tiling: TilingConfig,
}

/// Pixels and the size of the frame they stand for (larger when a big JPEG
/// was decoded scaled down).
struct View<'a> {
    image: &'a RgbImage,
    frame_w: u32,
    frame_h: u32,
}

/// One worker's detector: owns its engine and reusable buffers.
pub struct Detector {
    engine: Box<dyn Engine>,
    pre: Preprocessor,
    settings: DetectorSettings,
    /// The stitched probability map, reused from frame to frame.
    stitch: Vec<u8>,
    /// The coarse pass's map (`guided`).
    coarse: Vec<u8>,
    /// What runs on the crops of the boxes (`[read]`).
    second: Option<Box<dyn SecondStage>>,
}

/// A second model run on the crops of a frame's detections (reading the
/// text in each box). Declared here and implemented above (`read/`), so the
/// detector hands it the pixels it already holds: the frame is never
/// decoded twice.
pub trait SecondStage: Send {
    /// Fills in what it finds in `detections` (frame pixels); `image` is the
    /// frame as decoded, `frame` its full size. Returns the crops it ran.
    fn apply(
        &mut self,
        image: &RgbImage,
        frame: (u32, u32),
        detections: &mut [Detection],
    ) -> Result<usize, InferError>;
}

/// How a tile's map goes into the stitched one.
#[derive(Debug, Clone, Copy)]
enum Stitch {
    /// The pixels the tile owns (a plan's owned rectangles partition it).
    Owned,
    /// The larger of the two values, over all the tile shows (windows that
    /// overlap freely).
    Max,
}

impl Detector {
    /// A detector over `engine`.
    pub fn new(engine: Box<dyn Engine>, settings: DetectorSettings) -> Detector {
        let (mean, std, bgr) = settings.normalisation;
        Detector {
            engine,
            pre: Preprocessor::with_normalisation(mean, std, bgr),
            settings,
            stitch: Vec::new(),
            coarse: Vec::new(),
            second: None,
        }
    }

    /// Runs `second` on the boxes of every frame from now on.
    pub fn set_second_stage(&mut self, second: Option<Box<dyn SecondStage>>) {
        self.second = second;
    }

    /// Replaces the engine (a backend switch); buffers and settings stay.
    pub fn set_engine(&mut self, engine: Box<dyn Engine>) {
        self.engine = engine;
    }

    /// Replaces thresholds and sizes without touching the engine.
    pub fn set_settings(&mut self, settings: DetectorSettings) {
        if settings.normalisation != self.settings.normalisation {
            let (mean, std, bgr) = settings.normalisation;
            self.pre = Preprocessor::with_normalisation(mean, std, bgr);
        }
        self.settings = settings;
    }

    /// Decodes and detects one image file.
    pub fn detect_file(&mut self, path: &Path) -> Result<FrameResult, FrameError> {
        let start = Instant::now();
        let decoded = decode_file_checked(
            path,
            self.settings.max_pixels,
            self.settings.max_pixels_per_byte,
        )?;
        let view = View {
            image: &decoded.image,
            frame_w: decoded.frame_w,
            frame_h: decoded.frame_h,
        };
        self.detect_view(view, start, None)
    }

    /// Detects on pixels already decoded.
    pub fn detect_rgb(&mut self, img: RgbImage) -> Result<FrameResult, FrameError> {
        self.detect_image(&img)
    }

    /// Detects on pixels the caller keeps (a pooled camera frame).
    pub fn detect_image(&mut self, img: &RgbImage) -> Result<FrameResult, FrameError> {
        self.detect_image_reusing(img, None)
    }

    /// Detects on a stream's frame; with `reuse`, a tiled text pass runs
    /// only the tiles whose picture changed since they last ran and keeps
    /// the rest of the stitched map (see `tile_reuse`).
    pub fn detect_image_reusing(
        &mut self,
        img: &RgbImage,
        reuse: Option<&mut TileReuse>,
    ) -> Result<FrameResult, FrameError> {
        let view = View {
            image: img,
            frame_w: img.width(),
            frame_h: img.height(),
        };
        self.detect_view(view, Instant::now(), reuse)
    }

    fn detect_view(
        &mut self,
        decoded: View<'_>,
        start: Instant,
        reuse: Option<&mut TileReuse>,
    ) -> Result<FrameResult, FrameError> {
        let mut timing = Timing {
            decode: ms(start, Instant::now()),
            ..Timing::default()
        };
        let (frame_w, frame_h) = (decoded.frame_w, decoded.frame_h);
        let mut work = Work::default();
        let mut detections = match self.settings.head {
            Head::Db => self.text(&decoded, &mut timing, &mut work, reuse)?,
            Head::Yolo(head) => self.boxes(head, &decoded, &mut timing, &mut work)?,
            Head::Classify(head) => {
                let t0 = Instant::now();
                let (w, h) = self.settings.input;
                let img = &decoded.image;
                let place =
                    Placement::center_crop(img.width(), img.height(), w, h, self.settings.crop);
                let tensor = self.pre.place_to_tensor(img, &place, 0);
                let t1 = Instant::now();
                let out = self.engine.run(tensor)?;
                let t2 = Instant::now();
                work.count_run(1, w, h);
                let s = &self.settings;
                let dets = head
                    .decode(
                        &out.data,
                        s.decode.top_k,
                        s.score_threshold,
                        &s.labels,
                        &s.allowed,
                        (frame_w, frame_h),
                    )
                    .map_err(|e| FrameError::Output(e.to_string()))?;
                timing.add(t0, t1, t2, Instant::now());
                dets
            }
        };
        if let Some(second) = self.second.as_mut() {
            let t = Instant::now();
            work.crops_read += second.apply(decoded.image, (frame_w, frame_h), &mut detections)?;
            timing.read = ms(t, Instant::now());
        }
        detections.shrink_to_fit();
        timing.total = ms(start, Instant::now());
        let scaled_to = (decoded.image.width() != frame_w || decoded.image.height() != frame_h)
            .then(|| [decoded.image.width(), decoded.image.height()]);
        Ok(FrameResult {
            width: frame_w,
            height: frame_h,
            scaled_to,
            detections,
            timing,
            work,
        })
    }

    /// Boxes: each tile (and the whole frame, when asked or when not tiling)
    /// letterboxed into the model, decoded, and merged across passes.
    fn boxes(
        &mut self,
        head: YoloHead,
        decoded: &View<'_>,
        timing: &mut Timing,
        work: &mut Work,
    ) -> Result<Vec<Detection>, FrameError> {
        let img = &decoded.image;
        let tiling = &self.settings.tiling;
        let (w, h) = self.settings.input;
        let whole_scale = (w as f64 / img.width() as f64).min(h as f64 / img.height() as f64);
        let tiled = tiling.tiles_frame(whole_scale);
        let mut regions: Vec<[f64; 4]> = Vec::new();
        if tiled {
            let plan = TilePlan::full_tiles(img.width(), img.height(), tiling);
            regions.extend((0..plan.tiles.len()).map(|i| plan.source_rect(i).0));
        }
        if !tiled || tiling.full_frame {
            regions.push([0.0, 0.0, img.width() as f64, img.height() as f64]);
        }
        let mut dets = Vec::new();
        for src in &regions {
            let t0 = Instant::now();
            let place = Placement::letterbox(*src, w, h);
            let tensor = self.pre.place_to_tensor(img, &place, LETTERBOX_FILL);
            let t1 = Instant::now();
            let out = self.engine.run(tensor)?;
            let t2 = Instant::now();
            work.count_run(1, w, h);
            let s = &self.settings;
            let found = head
                .decode(
                    &out.data,
                    &s.decode,
                    s.score_threshold,
                    &s.labels,
                    &s.allowed,
                    &place,
                )
                .map_err(|e| FrameError::Output(e.to_string()))?;
            dets.extend(found);
            timing.add(t0, t1, t2, Instant::now());
        }
        let t3 = Instant::now();
        if regions.len() > 1 {
            dets = merge(dets, &self.settings.tiling.merge_config());
            dets.truncate(self.settings.decode.max_detections);
        }
        // Frames decoded scaled down (huge JPEGs) report boxes in frame pixels.
        let fx = decoded.frame_w as f32 / img.width() as f32;
        let fy = decoded.frame_h as f32 / img.height() as f32;
        if (fx, fy) != (1.0, 1.0) {
            for d in &mut dets {
                d.bbox = [
                    d.bbox[0] * fx,
                    d.bbox[1] * fy,
                    d.bbox[2] * fx,
                    d.bbox[3] * fy,
                ];
            }
        }
        timing.post += ms(t3, Instant::now());
        Ok(dets)
    }

    /// Text: tiles stitched into one map, or the whole frame, DB-decoded.
    fn text(
        &mut self,
        decoded: &View<'_>,
        timing: &mut Timing,
        work: &mut Work,
        reuse: Option<&mut TileReuse>,
    ) -> Result<Vec<Detection>, FrameError> {
        let (frame_w, frame_h) = (decoded.frame_w, decoded.frame_h);
        // Text is tiled in every mode but `off`: `auto` covers the frame at
        // its recall-first scale, a frame that fits one tile in one tensor.
        let dets = if self.settings.tiling.enabled() {
            let guided = self.settings.tiling.mode == TilingMode::Guided;
            let mut dets = match reuse {
                // Reuse keeps a map of whole tiles; guided windows move
                // with the text, so a guided stream runs guided passes.
                Some(r) if !guided => {
                    self.tiled_reusing(decoded.image, frame_w, frame_h, timing, work, r)?
                }
                _ if guided => self.guided(decoded.image, frame_w, frame_h, timing, work)?,
                _ => self.tiled(decoded.image, frame_w, frame_h, timing, work, None)?,
            };
            if self.settings.tiling.full_frame {
                dets.extend(self.whole_frame(decoded.image, frame_w, frame_h, timing, work)?);
                // Text the whole-frame pass also found keeps the better quad.
                let cfg = MergeConfig {
                    strategy: MergeStrategy::Nms,
                    ..MergeConfig::default()
                };
                dets = merge(dets, &cfg);
                db::sort_reading_order(&mut dets);
            }
            dets
        } else {
            self.whole_frame(decoded.image, frame_w, frame_h, timing, work)?
        };
        Ok(dets)
    }

    /// The whole frame shrunk to `max_side`, one engine run.
    fn whole_frame(
        &mut self,
        img: &RgbImage,
        frame_w: u32,
        frame_h: u32,
        timing: &mut Timing,
        work: &mut Work,
    ) -> Result<Vec<Detection>, FrameError> {
        let t0 = Instant::now();
        let (w, h) = whole_frame_size(img.width(), img.height(), self.settings.max_side);
        let tensor = self.pre.to_tensor(img, w, h);
        let t1 = Instant::now();
        let out = self.engine.run(tensor)?;
        let t2 = Instant::now();
        work.count_run(1, w, h);
        let (mh, mw) = db_map_shape(&out.shape, 1)?;
        let dets = self.postprocess_db(ProbMap::f32(&out.data, mw, mh), frame_w, frame_h);
        timing.add(t0, t1, t2, Instant::now());
        Ok(dets)
    }

    /// A tiled pass over a stream's frame with its reuse state: the kept
    /// map goes in as the stitch buffer, the changed tiles overwrite their
    /// parts, and the result is kept for the next frame. A failed pass
    /// leaves a partial map, so the state is forgotten.
    fn tiled_reusing(
        &mut self,
        img: &RgbImage,
        frame_w: u32,
        frame_h: u32,
        timing: &mut Timing,
        work: &mut Work,
        reuse: &mut TileReuse,
    ) -> Result<Vec<Detection>, FrameError> {
        let plan = TilePlan::new(img.width(), img.height(), &self.settings.tiling);
        let (run, keep) = reuse.select(img, &plan, Instant::now());
        std::mem::swap(&mut self.stitch, &mut reuse.map);
        let out = self.tiled(
            img,
            frame_w,
            frame_h,
            timing,
            work,
            Some((&plan, &run, keep)),
        );
        std::mem::swap(&mut self.stitch, &mut reuse.map);
        if out.is_err() {
            reuse.invalidate();
        }
        out
    }

    /// Tiles through the engine, the maps stitched by ownership, one DB decode
    /// over the stitched map: a line crossing a seam is one region. With
    /// `only`, just the tiles marked run, over the map already in the stitch
    /// buffer when it is to be kept.
    fn tiled(
        &mut self,
        img: &RgbImage,
        frame_w: u32,
        frame_h: u32,
        timing: &mut Timing,
        work: &mut Work,
        only: Option<(&TilePlan, &[bool], bool)>,
    ) -> Result<Vec<Detection>, FrameError> {
        let planned;
        let (plan, run, keep) = match only {
            Some(o) => o,
            None => {
                planned = TilePlan::new(img.width(), img.height(), &self.settings.tiling);
                (&planned, &[][..], false)
            }
        };
        let order: Vec<usize> = (0..plan.tiles.len())
            .filter(|&i| run.get(i).copied().unwrap_or(true))
            .collect();
        work.tiles.run += order.len() as u32;
        work.tiles.reused += (plan.tiles.len() - order.len()) as u32;
        let mut stitch = std::mem::take(&mut self.stitch);
        let ran = self.run_tiles(
            img,
            plan,
            &order,
            &mut stitch,
            keep,
            Stitch::Owned,
            timing,
            work,
        );
        self.stitch = stitch;
        ran?;
        let (sw, sh) = (plan.scaled_w as usize, plan.scaled_h as usize);
        let t3 = Instant::now();
        let dets = self.postprocess_db(ProbMap::u8(&self.stitch, sw, sh), frame_w, frame_h);
        timing.post += ms(t3, Instant::now());
        Ok(dets)
    }

    /// Runs tiles `order` of `plan` through the engine, writing their maps
    /// into `stitch` (the scaled frame's size; zeroed first unless `keep`).
    #[allow(clippy::too_many_arguments)]
    fn run_tiles(
        &mut self,
        img: &RgbImage,
        plan: &TilePlan,
        order: &[usize],
        stitch: &mut Vec<u8>,
        keep: bool,
        how: Stitch,
        timing: &mut Timing,
        work: &mut Work,
    ) -> Result<(), FrameError> {
        let len = plan.scaled_w as usize * plan.scaled_h as usize;
        if !keep || stitch.len() != len {
            stitch.clear();
            stitch.resize(len, 0);
        }
        // A model exported with a fixed batch takes no more tiles at once.
        let batch = (self.settings.tiling.batch.max(1) as usize)
            .min(self.engine.input_spec().max_batch.max(1));
        // Tiles of one shape go together; a plan's tiles come sorted by shape.
        for chunk in order.chunk_by(|a, b| plan.tiles[*a].hw() == plan.tiles[*b].hw()) {
            for group in chunk.chunks(batch) {
                let t0 = Instant::now();
                let tensor = self.pre.tiles_to_tensor(img, plan, group);
                let t1 = Instant::now();
                let out = self.engine.run(tensor)?;
                let t2 = Instant::now();
                let (mh, mw) = db_map_shape(&out.shape, group.len())?;
                let (th, tw) = plan.tiles[group[0]].hw();
                work.count_run(group.len(), tw, th);
                if (mh, mw) != (th as usize, tw as usize) {
                    return Err(FrameError::Output(format!(
                        "the model gave a {mw}x{mh} map for a {tw}x{th} tile; DB maps must match their input"
                    )));
                }
                for (k, &i) in group.iter().enumerate() {
                    let map = &out.data[k * mh * mw..(k + 1) * mh * mw];
                    match how {
                        Stitch::Owned => plan.stitch_owned(i, map, stitch),
                        Stitch::Max => plan.stitch_max(i, map, stitch),
                    }
                }
                timing.add(t0, t1, t2, Instant::now());
            }
        }
        Ok(())
    }

    /// Coarse to fine (`mode = "guided"`): a tiled pass at the coarse scale,
    /// then full-resolution windows over the candidates whose text is too
    /// small to read there; large text keeps its coarse detection.
    fn guided(
        &mut self,
        img: &RgbImage,
        frame_w: u32,
        frame_h: u32,
        timing: &mut Timing,
        work: &mut Work,
    ) -> Result<Vec<Detection>, FrameError> {
        let tiling = self.settings.tiling.clone();
        let coarse_scale = guided::coarse_scale(tiling.min_text_px, tiling.scale);
        let (sw, sh) = scaled_size(img.width(), img.height(), tiling.scale);
        // Nothing to gain: the coarse pass would be (nearly) the fine one,
        // or the whole frame is one tile anyway.
        if coarse_scale >= 0.9 * tiling.scale || (sw <= tiling.tile && sh <= tiling.tile) {
            return self.tiled(img, frame_w, frame_h, timing, work, None);
        }
        let coarse_cfg = TilingConfig {
            mode: TilingMode::Auto,
            scale: coarse_scale,
            ..tiling.clone()
        };
        let coarse_plan = TilePlan::new(img.width(), img.height(), &coarse_cfg);
        let all: Vec<usize> = (0..coarse_plan.tiles.len()).collect();
        let mut coarse = std::mem::take(&mut self.coarse);
        let ran = self.run_tiles(
            img,
            &coarse_plan,
            &all,
            &mut coarse,
            false,
            Stitch::Owned,
            timing,
            work,
        );
        if let Err(e) = ran {
            self.coarse = coarse;
            return Err(e);
        }
        let t0 = Instant::now();
        let (cw, ch) = (coarse_plan.scaled_w as usize, coarse_plan.scaled_h as usize);
        let coarse_dets = self.postprocess_db(ProbMap::u8(&coarse, cw, ch), frame_w, frame_h);
        let found = guided::candidates(&coarse, cw, ch, img.width(), img.height());
        self.coarse = coarse;
        // Frame pixels per coarse pixel, for box sizes; frames decoded scaled
        // down report boxes in original frame pixels.
        let to_frame = frame_h as f64 / ch as f64;
        let to_img = img.height() as f64 / frame_h as f64;
        let large = |d: &Detection| {
            let [x0, y0, x1, y1] = d.bbox;
            (((x1 - x0).min(y1 - y0)) as f64 / to_frame) >= guided::LARGE_BOX_COARSE_PX as f64
        };
        // In frame pixels of the decoded image (candidates are there).
        let touches = |d: &Detection, r: &[f64; 4]| {
            let b = d.bbox.map(|v| v as f64 * to_img);
            b[0] < r[2] && r[0] < b[2] && b[1] < r[3] && r[1] < b[3]
        };
        // A candidate is refined unless large text, read well enough at the
        // coarse scale, covers it.
        let refine: Vec<[f64; 4]> = found
            .into_iter()
            .filter(|r| !coarse_dets.iter().any(|d| large(d) && touches(d, r)))
            .collect();
        timing.post += ms(t0, Instant::now());
        let Some(windows) = guided::window_plan(img.width(), img.height(), &refine, &tiling) else {
            return Ok(coarse_dets);
        };
        // Text all over the frame: plain tiles cost no more than windows.
        let tiles = TilePlan::new(
            img.width(),
            img.height(),
            &TilingConfig {
                mode: TilingMode::Auto,
                ..tiling.clone()
            },
        );
        let px = |p: &TilePlan| -> u64 {
            p.tiles
                .iter()
                .map(|t| t.x.size as u64 * t.y.size as u64)
                .sum()
        };
        let (fine_plan, how) = if px(&windows) < px(&tiles) {
            (windows, Stitch::Max)
        } else {
            (tiles, Stitch::Owned)
        };
        let order: Vec<usize> = (0..fine_plan.tiles.len()).collect();
        work.tiles.run += (coarse_plan.tiles.len() + order.len()) as u32;
        let mut stitch = std::mem::take(&mut self.stitch);
        let ran = self.run_tiles(
            img,
            &fine_plan,
            &order,
            &mut stitch,
            false,
            how,
            timing,
            work,
        );
        self.stitch = stitch;
        ran?;
        let t1 = Instant::now();
        let (fw, fh) = (fine_plan.scaled_w as usize, fine_plan.scaled_h as usize);
        let mut dets = self.postprocess_db(ProbMap::u8(&self.stitch, fw, fh), frame_w, frame_h);
        // A window also shows the edge of text nearby that was not refined
        // (large text, kept from the coarse pass): only text on a refined
        // candidate counts.
        dets.retain(|d| refine.iter().any(|r| touches(d, r)));
        // Large text keeps its coarse box; small text touching a refined
        // candidate is that text, found again finer.
        dets.extend(
            coarse_dets
                .into_iter()
                .filter(|d| large(d) || !refine.iter().any(|r| touches(d, r))),
        );
        let cfg = MergeConfig {
            strategy: MergeStrategy::Nms,
            ..MergeConfig::default()
        };
        let mut dets = merge(dets, &cfg);
        db::sort_reading_order(&mut dets);
        timing.post += ms(t1, Instant::now());
        Ok(dets)
    }

    /// DB post-processing of `map` into frame pixels, with the current settings.
    fn postprocess_db(&self, map: ProbMap<'_>, frame_w: u32, frame_h: u32) -> Vec<Detection> {
        db::decode(
            &self.settings.decode,
            map,
            frame_w,
            frame_h,
            &self.settings.labels[0],
        )
    }
}

impl Work {
    fn count_run(&mut self, batch: usize, w: u32, h: u32) {
        self.engine_runs += 1;
        self.model_pixels += batch as u64 * w as u64 * h as u64;
    }
}

impl Timing {
    /// Adds one engine call: pre-processing `t0..t1`, inference `t1..t2`,
    /// post-processing `t2..t3`.
    fn add(&mut self, t0: Instant, t1: Instant, t2: Instant, t3: Instant) {
        self.decode += ms(t0, t1);
        self.infer += ms(t1, t2);
        self.post += ms(t2, t3);
    }
}

fn ms(a: Instant, b: Instant) -> f64 {
    (b - a).as_secs_f64() * 1000.0
}

/// `(h, w)` of a DB output holding `n` maps.
fn db_map_shape(shape: &[usize], n: usize) -> Result<(usize, usize), FrameError> {
    match shape {
        [b, 1, mh, mw] if *b == n => Ok((*mh, *mw)),
        other => Err(FrameError::Output(format!(
            "a DB model must output [{n}, 1, H, W], this one gave {other:?}; is model.family right?"
        ))),
    }
}
