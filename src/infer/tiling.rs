//! Tiled inference geometry: which model-sized windows cover a frame, which
//! frame pixels each window owns when dense outputs are stitched, and the map
//! between tile and frame coordinates.
//!
//! Everything is computed in *scaled* frame pixels (the frame resampled by
//! `scale`); tiles are cut from the scaled frame and the stitched map lives
//! there too. Ownership follows the rule "a pixel belongs to the tile where it
//! lies farthest from an inner tile edge". For a grid that rule is separable,
//! so along each axis a tile owns the interval between the midpoints of its
//! overlaps with its neighbours, and the owned rectangles partition the frame.

use crate::base::issue::Issue;
use serde::Deserialize;

use crate::postprocess::merge::{MatchMetric, MergeConfig, MergeStrategy};

/// When frames are cut into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TilingMode {
    /// Whole-frame inference, the frame shrunk to `model.max_side`.
    Off,
    /// Always tile; a frame smaller than a tile is padded to a full tile, so
    /// every tensor has one shape (what fixed-shape engines want).
    Tiles,
    /// Text models: the frame resampled so text `min_text_px` tall reaches
    /// the model at [`READABLE_TEXT_PX`] (recall first), then cut into
    /// tiles shrunk to cover it evenly; a frame that fits one tile is one
    /// tensor of its own size (rounded up to 32). Box models: the whole
    /// frame when the model sees it at `whole_frame_min_scale` of its
    /// resolution or more, else tiles.
    #[default]
    Auto,
    /// Coarse to fine (text models): the whole frame at a coarse scale set by
    /// `min_text_px`, then full resolution only where the coarse map shows
    /// text too small to read there (see `guided`).
    Guided,
}

impl TilingMode {
    /// Name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            TilingMode::Off => "off",
            TilingMode::Tiles => "tiles",
            TilingMode::Auto => "auto",
            TilingMode::Guided => "guided",
        }
    }
}

/// `[tiling]` section.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TilingConfig {
    /// off | tiles | auto.
    #[serde(default)]
    pub mode: TilingMode,
    /// Tile side in scaled-frame pixels (multiple of 32). Left out (or 0):
    /// 960 for text, the model's input width for YOLO (see `Config`).
    #[serde(default)]
    pub tile: u32,
    /// Pixels shared by neighbouring tiles (at least this many; tiles are spread evenly).
    #[serde(default = "d_overlap")]
    pub overlap: u32,
    /// Resample the frame by this factor before tiling (2.0 for tiny text).
    /// Left out: [`TilingConfig::readable_scale`] for text models in `auto`,
    /// else 1.0 (resolved by `Config`, which knows the model family).
    #[serde(skip_deserializing, default = "d_scale")]
    pub scale: f32,
    /// `scale` as the file gave it.
    #[serde(rename = "scale", default, skip_serializing)]
    pub scale_given: Option<f32>,
    /// Also run one whole-frame pass at `model.max_side` (large objects), merged with the tiles.
    #[serde(default)]
    pub full_frame: bool,
    /// Tiles per engine call. More costs memory and, on the CPU, buys little.
    #[serde(default = "d_batch")]
    pub batch: u32,
    /// Box models: how boxes found by several tiles (and the whole-frame
    /// pass) become one: `nmm` grows the best box over its matches, `nms`
    /// keeps only the best.
    #[serde(default)]
    pub merge: MergeStrategy,
    /// Box models: `ios` (intersection over the smaller box; a box cut by a
    /// tile edge matches the whole one) or `iou`.
    #[serde(default, rename = "match")]
    pub match_metric: MatchMetric,
    /// Box models: boxes of one class match when the metric is at least this.
    #[serde(default = "d_merge_threshold")]
    pub merge_threshold: f32,
    /// `auto`, box models: run the whole frame when the model sees it at this
    /// fraction of its resolution or more; 1.0 tiles every frame larger than
    /// the model. (Text models in `auto` follow `min_text_px` instead.)
    #[serde(default = "d_whole_frame_min_scale")]
    pub whole_frame_min_scale: f32,
    /// The smallest text to find, in frame pixels (its ink height): sets the
    /// scale of `auto` (text models) and of `guided`'s coarse pass.
    #[serde(default = "d_min_text_px")]
    pub min_text_px: f32,
}

/// `min_text_px` when unset: the ink height of a 12 px font's capitals and
/// digits (label and meter text on a 4K frame).
fn d_min_text_px() -> f32 {
    10.0
}

/// Ink height, in model-input pixels, at which PP-OCR's DB detectors find
/// every line. Measured with `make-samples` (DejaVu Sans, 80 lines per
/// height, PP-OCRv4 det on ONNX Runtime, recall at IoU 0.3): 6.3 px and
/// taller 1.000, 6.0 px 0.988, 5.6 px 0.95–1.0, 5.4 px 0.96, 5.0 px
/// 0.51–0.96, 4.5 px 0.0–0.70. 7 leaves a margin for other typefaces and
/// for JPEG.
pub const READABLE_TEXT_PX: f32 = 7.0;

fn d_whole_frame_min_scale() -> f32 {
    0.5
}

fn d_merge_threshold() -> f32 {
    0.5
}

fn d_tile() -> u32 {
    960
}
fn d_overlap() -> u32 {
    128
}
fn d_scale() -> f32 {
    1.0
}
fn d_batch() -> u32 {
    1
}

impl Default for TilingConfig {
    fn default() -> Self {
        TilingConfig {
            mode: TilingMode::default(),
            tile: d_tile(),
            overlap: d_overlap(),
            scale: d_scale(),
            full_frame: false,
            batch: d_batch(),
            merge: MergeStrategy::default(),
            match_metric: MatchMetric::default(),
            merge_threshold: d_merge_threshold(),
            whole_frame_min_scale: d_whole_frame_min_scale(),
            min_text_px: d_min_text_px(),
            scale_given: None,
        }
    }
}

impl TilingConfig {
    /// The scale at which text `min_text_px` tall reaches the model at
    /// [`READABLE_TEXT_PX`]: the recall-first scale of `auto` for text
    /// models (0.7 by default). Never above 1: enlarging costs time and
    /// finds nothing a full-resolution pass misses.
    pub fn readable_scale(&self) -> f32 {
        (READABLE_TEXT_PX / self.min_text_px).min(1.0)
    }

    /// Sets `scale` from the file, or else from the mode and the model
    /// kind: text in `auto` follows `min_text_px`; everything else keeps
    /// the frame's own resolution.
    pub fn resolve_scale(&mut self, text_model: bool) {
        self.scale = match self.scale_given {
            Some(s) => s,
            None if text_model && self.mode == TilingMode::Auto => self.readable_scale(),
            None => d_scale(),
        };
    }

    /// Problems, keyed within `[tiling]`.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        if self.tile < 64 || !self.tile.is_multiple_of(32) || self.tile > 4096 {
            out.push(Issue::new(
                "tile",
                format!(
                    "{} is not a multiple of 32 between 64 and 4096; try 960 (or 640 on a small budget)",
                    self.tile
                ),
            ));
        }
        if self.overlap * 2 >= self.tile {
            out.push(Issue::new(
                "overlap",
                format!(
                    "{} must be less than half of tile ({}); try 128",
                    self.overlap, self.tile
                ),
            ));
        }
        if !(self.scale >= 0.125 && self.scale <= 4.0) {
            out.push(Issue::new(
                "scale",
                format!(
                    "{} is not between 0.125 and 4; 1.0 keeps the frame as it is, 2.0 helps tiny text",
                    self.scale
                ),
            ));
        }
        if !(self.merge_threshold > 0.0 && self.merge_threshold <= 1.0) {
            out.push(Issue::new(
                "merge_threshold",
                format!("{} is not in (0, 1]; try 0.5", self.merge_threshold),
            ));
        }
        if !(self.whole_frame_min_scale > 0.0 && self.whole_frame_min_scale <= 1.0) {
            out.push(Issue::new(
                "whole_frame_min_scale",
                format!(
                    "{} is not in (0, 1]; 0.5 runs 1080p whole at 960, 1.0 tiles every frame larger than the model",
                    self.whole_frame_min_scale
                ),
            ));
        }
        if !(self.min_text_px >= 2.0 && self.min_text_px <= 512.0) {
            out.push(Issue::new(
                "min_text_px",
                format!(
                    "{} is not between 2 and 512 (pixels of text height); try 12",
                    self.min_text_px
                ),
            ));
        }
        if self.batch == 0 || self.batch > 16 {
            out.push(Issue::new(
                "batch",
                format!("{} is not between 1 and 16; try 1 on the CPU", self.batch),
            ));
        }
        out
    }

    /// How box models merge what several passes found.
    pub fn merge_config(&self) -> MergeConfig {
        MergeConfig {
            strategy: self.merge,
            metric: self.match_metric,
            threshold: self.merge_threshold,
            class_agnostic: false,
        }
    }

    /// Whether frames go through a `TilePlan` at all (`mode` is not `off`).
    pub fn enabled(&self) -> bool {
        self.mode != TilingMode::Off
    }

    /// Whether a frame the whole-frame pass sees at `whole_scale` of its
    /// resolution is cut into tiles.
    pub fn tiles_frame(&self, whole_scale: f64) -> bool {
        match self.mode {
            TilingMode::Off => false,
            TilingMode::Tiles => true,
            TilingMode::Auto => whole_scale < self.whole_frame_min_scale as f64,
            TilingMode::Guided => true,
        }
    }
}

/// `width`×`height` resampled by `scale`, at least 1×1.
pub fn scaled_size(width: u32, height: u32, scale: f32) -> (u32, u32) {
    let s = |v: u32| ((v as f64 * scale as f64).round() as u32).max(1);
    (s(width), s(height))
}

/// One tile's extent along one axis, in scaled frame pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// First scaled pixel the tile covers.
    pub start: u32,
    /// Tensor side: the tile size, or the frame rounded up to 32 when the frame is smaller.
    pub size: u32,
    /// Scaled pixels that hold real frame data (`size` minus padding).
    pub valid: u32,
    /// First pixel this tile owns when stitching.
    pub own_start: u32,
    /// One past the last pixel this tile owns.
    pub own_end: u32,
}

/// Spans covering `len` pixels with windows of `tile` sharing at least
/// `overlap`. A frame no longer than a tile gets one window, the tile itself
/// when `pad_to_tile` (one tensor shape for every frame) or else the frame
/// rounded up to 32. With `shrink`, windows are cut to the smallest multiple
/// of 32 that still covers the frame with the same count: a 1080-pixel side
/// needs two 960 windows, but two of 608 do (608 + 608 − 128 ≥ 1080), which
/// halves the pixels a 1080p frame sends through the model.
fn spans(len: u32, tile: u32, overlap: u32, pad_to_tile: bool, shrink: bool) -> Vec<Span> {
    if len <= tile {
        return vec![Span {
            start: 0,
            size: if pad_to_tile {
                tile
            } else {
                len.div_ceil(32) * 32
            },
            valid: len,
            own_start: 0,
            own_end: len,
        }];
    }
    let stride = tile - overlap;
    let n = (len - overlap).div_ceil(stride);
    let tile = if shrink {
        ((len + (n - 1) * overlap).div_ceil(n).div_ceil(32) * 32).min(tile)
    } else {
        tile
    };
    // Spread evenly so every overlap is at least `overlap` and the last tile
    // ends exactly on the frame edge (no padding, one tensor shape).
    let starts: Vec<u32> = (0..n)
        .map(|i| ((i as u64 * (len - tile) as u64 + (n as u64 - 1) / 2) / (n as u64 - 1)) as u32)
        .collect();
    let bounds: Vec<u32> = (0..=n as usize)
        .map(|i| match i {
            0 => 0,
            i if i == n as usize => len,
            i => (starts[i] + starts[i - 1] + tile) / 2,
        })
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(i, &start)| Span {
            start,
            size: tile,
            valid: tile,
            own_start: bounds[i],
            own_end: bounds[i + 1],
        })
        .collect()
}

/// One tile of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Horizontal extent.
    pub x: Span,
    /// Vertical extent.
    pub y: Span,
}

impl Tile {
    /// The tile's tensor `(height, width)`.
    pub fn hw(&self) -> (u32, u32) {
        (self.y.size, self.x.size)
    }
}

/// How one frame is cut into tiles and put back together.
#[derive(Debug, Clone, PartialEq)]
pub struct TilePlan {
    /// Frame width before scaling.
    pub frame_w: u32,
    /// Frame height before scaling.
    pub frame_h: u32,
    /// Scaled frame width: the stitched map's width.
    pub scaled_w: u32,
    /// Scaled frame height.
    pub scaled_h: u32,
    /// Scaled pixels per frame pixel.
    pub scale: f64,
    /// Tiles in row-major order.
    pub tiles: Vec<Tile>,
}

impl TilePlan {
    /// Plans `frame_w`×`frame_h` under `cfg`. In `auto` mode tiles shrink
    /// to cover the frame evenly (dynamic-input models such as DB).
    pub fn new(frame_w: u32, frame_h: u32, cfg: &TilingConfig) -> TilePlan {
        Self::with_shrink(frame_w, frame_h, cfg, cfg.mode == TilingMode::Auto)
    }

    /// Plans with tiles of exactly `cfg.tile` on frames larger than a tile:
    /// a model that letterboxes each tile sees objects at one scale.
    pub fn full_tiles(frame_w: u32, frame_h: u32, cfg: &TilingConfig) -> TilePlan {
        Self::with_shrink(frame_w, frame_h, cfg, false)
    }

    fn with_shrink(frame_w: u32, frame_h: u32, cfg: &TilingConfig, shrink: bool) -> TilePlan {
        let (scaled_w, scaled_h) = scaled_size(frame_w, frame_h, cfg.scale);
        let pad = cfg.mode == TilingMode::Tiles;
        let xs = spans(scaled_w, cfg.tile, cfg.overlap, pad, shrink);
        let ys = spans(scaled_h, cfg.tile, cfg.overlap, pad, shrink);
        let tiles = ys
            .iter()
            .flat_map(|&y| xs.iter().map(move |&x| Tile { x, y }))
            .collect();
        TilePlan {
            frame_w,
            frame_h,
            scaled_w,
            scaled_h,
            scale: scaled_w as f64 / frame_w as f64,
            tiles,
        }
    }

    /// Scaled-frame pixel of tile pixel `(tx, ty)` in tile `i`.
    pub fn to_scaled(&self, i: usize, tx: u32, ty: u32) -> (u32, u32) {
        let t = &self.tiles[i];
        (t.x.start + tx, t.y.start + ty)
    }

    /// Frame coordinates (sub-pixel) of scaled-frame coordinates.
    pub fn scaled_to_frame(&self, sx: f64, sy: f64) -> (f64, f64) {
        (
            sx * self.frame_w as f64 / self.scaled_w as f64,
            sy * self.frame_h as f64 / self.scaled_h as f64,
        )
    }

    /// The tile that owns scaled pixel `(sx, sy)`.
    pub fn owner(&self, sx: u32, sy: u32) -> usize {
        self.tiles
            .iter()
            .position(|t| {
                (t.x.own_start..t.x.own_end).contains(&sx)
                    && (t.y.own_start..t.y.own_end).contains(&sy)
            })
            .expect("owned rectangles partition the scaled frame")
    }

    /// Region of the original frame that tile `i` shows, as
    /// `(left, top, width, height)` in frame pixels (sub-pixel), and the
    /// size in tile pixels it is resampled to (the rest is padding).
    pub fn source_rect(&self, i: usize) -> ([f64; 4], (u32, u32)) {
        let t = &self.tiles[i];
        let sx = self.frame_w as f64 / self.scaled_w as f64;
        let sy = self.frame_h as f64 / self.scaled_h as f64;
        (
            [
                t.x.start as f64 * sx,
                t.y.start as f64 * sy,
                t.x.valid as f64 * sx,
                t.y.valid as f64 * sy,
            ],
            (t.x.valid, t.y.valid),
        )
    }

    /// Copies the pixels tile `i` owns from its probability `map` (the
    /// tile's `h×w`, row-major) into `stitched` (the scaled frame's
    /// `scaled_w × scaled_h`), quantised to `p × 255`.
    pub fn stitch_owned(&self, i: usize, map: &[f32], stitched: &mut [u8]) {
        let tile = &self.tiles[i];
        let (mw, sw) = (tile.x.size as usize, self.scaled_w as usize);
        for sy in tile.y.own_start..tile.y.own_end {
            let ty = (sy - tile.y.start) as usize;
            let src = &map[ty * mw..][..mw];
            let dst = &mut stitched[sy as usize * sw..][..sw];
            let (x0, x1) = (tile.x.own_start as usize, tile.x.own_end as usize);
            let from = (tile.x.own_start - tile.x.start) as usize;
            for (d, p) in dst[x0..x1].iter_mut().zip(&src[from..]) {
                *d = (p.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }

    /// Puts what tile `i` owns of its probability `map` into `stitched`,
    /// keeping the larger value where owned parts overlap (windows placed
    /// freely, as `guided` places them).
    pub fn stitch_max(&self, i: usize, map: &[f32], stitched: &mut [u8]) {
        let tile = &self.tiles[i];
        let (mw, sw) = (tile.x.size as usize, self.scaled_w as usize);
        let (x0, x1) = (tile.x.own_start as usize, tile.x.own_end as usize);
        let from = (tile.x.own_start - tile.x.start) as usize;
        for sy in tile.y.own_start..tile.y.own_end {
            let ty = (sy - tile.y.start) as usize;
            let src = &map[ty * mw + from..][..x1 - x0];
            for (d, p) in stitched[sy as usize * sw + x0..][..x1 - x0]
                .iter_mut()
                .zip(src)
            {
                *d = (*d).max((p.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }

    /// Distinct tensor shapes `(h, w)` this plan uses.
    pub fn shapes(&self) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self.tiles.iter().map(Tile::hw).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(tile: u32, overlap: u32, scale: f32) -> TilingConfig {
        TilingConfig {
            tile,
            overlap,
            scale,
            ..TilingConfig::default()
        }
    }

    #[test]
    fn a_4k_frame_at_960_is_five_by_three() {
        let plan = TilePlan::full_tiles(3840, 2160, &TilingConfig::default());
        assert_eq!(plan.tiles.len(), 15);
        assert_eq!(plan.shapes(), vec![(960, 960)]);
        let last = plan.tiles.last().unwrap();
        assert_eq!(last.x.start + last.x.size, 3840);
        assert_eq!(last.y.start + last.y.size, 2160);
        // Auto mode keeps the count and shrinks the tiles to fit.
        let auto = TilePlan::new(3840, 2160, &TilingConfig::default());
        assert_eq!(auto.tiles.len(), 15);
        assert_eq!(auto.shapes(), vec![(832, 896)]);
    }

    #[test]
    fn a_1080p_frame_is_six_tiles_of_about_half_the_pixels() {
        let full = TilePlan::full_tiles(1920, 1080, &TilingConfig::default());
        let auto = TilePlan::new(1920, 1080, &TilingConfig::default());
        assert_eq!((full.tiles.len(), auto.tiles.len()), (6, 6));
        assert_eq!(auto.shapes(), vec![(608, 736)]);
        let px = |p: &TilePlan| p.tiles.iter().map(|t| t.x.size * t.y.size).sum::<u32>();
        assert!(
            px(&auto) * 2 <= px(&full) + px(&full) / 20,
            "{} vs {}",
            px(&auto),
            px(&full)
        );
    }

    #[test]
    fn a_small_frame_is_one_padded_tile() {
        let plan = TilePlan::new(500, 300, &TilingConfig::default());
        assert_eq!(plan.tiles.len(), 1);
        assert_eq!(plan.tiles[0].hw(), (320, 512));
        assert_eq!(plan.tiles[0].x.valid, 500);
        assert_eq!(plan.source_rect(0).1, (500, 300));
    }

    #[test]
    fn tiles_mode_pads_small_frames_to_one_shape() {
        let c = TilingConfig {
            mode: TilingMode::Tiles,
            ..TilingConfig::default()
        };
        assert_eq!(TilePlan::new(500, 300, &c).shapes(), vec![(960, 960)]);
        assert_eq!(TilePlan::new(1920, 1080, &c).shapes(), vec![(960, 960)]);
        let half = cfg(960, 128, 0.5);
        assert_eq!(TilePlan::new(1920, 1080, &half).tiles.len(), 1);
        assert_eq!(TilePlan::new(3840, 2160, &half).tiles.len(), 6);
    }

    #[test]
    fn bad_values_name_their_key() {
        let bad = TilingConfig {
            tile: 100,
            overlap: 60,
            scale: 0.0,
            batch: 0,
            ..TilingConfig::default()
        };
        let keys: Vec<String> = bad.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(keys, vec!["tile", "overlap", "scale", "batch"]);
        let never = TilingConfig {
            whole_frame_min_scale: 0.0,
            ..TilingConfig::default()
        };
        assert_eq!(never.validate()[0].key, "whole_frame_min_scale");
    }

    #[test]
    fn auto_runs_1080p_whole_and_tiles_4k() {
        let auto = TilingConfig::default();
        assert!(!auto.tiles_frame(0.5), "1080p at 960");
        assert!(auto.tiles_frame(0.25), "4K at 960");
        let always = TilingConfig {
            whole_frame_min_scale: 1.0,
            ..TilingConfig::default()
        };
        assert!(always.tiles_frame(0.5));
        assert!(!always.tiles_frame(1.0));
        let off = TilingConfig {
            mode: TilingMode::Off,
            ..TilingConfig::default()
        };
        assert!(!off.tiles_frame(0.01));
        assert!(TilingConfig::default().validate().is_empty());
    }

    proptest! {
        #[test]
        fn tiles_cover_every_pixel_and_overlap_enough(
            w in 1u32..6000, h in 1u32..4000,
            tile_k in 2u32..40, overlap in 0u32..400, scale in 0.25f32..3.0,
        ) {
            let tile = tile_k * 32;
            prop_assume!(overlap * 2 < tile);
            let plan = TilePlan::new(w, h, &cfg(tile, overlap, scale));
            for axis in [0, 1] {
                let len = if axis == 0 { plan.scaled_w } else { plan.scaled_h };
                let mut spans: Vec<Span> = plan.tiles.iter()
                    .map(|t| if axis == 0 { t.x } else { t.y }).collect();
                spans.sort_by_key(|s| s.start);
                spans.dedup();
                prop_assert_eq!(spans[0].start, 0);
                let last = spans.last().unwrap();
                prop_assert_eq!(last.start + last.valid, len);
                for s in &spans {
                    prop_assert!(s.valid <= s.size);
                    prop_assert_eq!(s.size % 32, 0);
                    prop_assert!(s.start + s.valid <= len);
                    // A tile owns only pixels it sees.
                    prop_assert!(s.start <= s.own_start && s.own_end <= s.start + s.valid);
                }
                for pair in spans.windows(2) {
                    // Neighbours share at least `overlap` and own adjoining intervals.
                    prop_assert!(pair[0].start + pair[0].size >= pair[1].start + overlap);
                    prop_assert_eq!(pair[0].own_end, pair[1].own_start);
                }
            }
        }

        #[test]
        fn ownership_partitions_the_frame_and_follows_the_farthest_edge_rule(
            w in 1u32..3000, h in 1u32..2000, tile_k in 2u32..20, overlap in 0u32..200,
        ) {
            let tile = tile_k * 32;
            prop_assume!(overlap * 2 < tile);
            let plan = TilePlan::new(w, h, &cfg(tile, overlap, 1.0));
            let owned: u64 = plan.tiles.iter()
                .map(|t| (t.x.own_end - t.x.own_start) as u64 * (t.y.own_end - t.y.own_start) as u64)
                .sum();
            prop_assert_eq!(owned, w as u64 * h as u64);
            // Along x, the owner is never closer to an inner edge than another
            // tile that also sees the pixel (ties allowed).
            let row: Vec<Span> = plan.tiles.iter().filter(|t| t.y.start == 0).map(|t| t.x).collect();
            let inner = |s: &Span, x: u32| {
                let left = if s.start == 0 { u32::MAX } else { x - s.start };
                let right = if s.start + s.valid == w { u32::MAX } else { s.start + s.valid - 1 - x };
                left.min(right)
            };
            for x in (0..w).step_by(7) {
                let owner = row.iter().find(|s| (s.own_start..s.own_end).contains(&x)).unwrap();
                for other in row.iter().filter(|s| (s.start..s.start + s.valid).contains(&x)) {
                    prop_assert!(inner(owner, x).saturating_add(1) >= inner(other, x));
                }
            }
        }

        #[test]
        fn coordinates_round_trip(
            w in 1u32..5000, h in 1u32..5000, scale in 0.25f32..3.0, fx in 0.0f64..1.0, fy in 0.0f64..1.0,
        ) {
            let plan = TilePlan::new(w, h, &cfg(960, 128, scale));
            let sx = (fx * (plan.scaled_w - 1) as f64) as u32;
            let sy = (fy * (plan.scaled_h - 1) as f64) as u32;
            let i = plan.owner(sx, sy);
            let t = plan.tiles[i];
            let (tx, ty) = (sx - t.x.start, sy - t.y.start);
            prop_assert_eq!(plan.to_scaled(i, tx, ty), (sx, sy));
            // The tile's source rectangle contains the frame point it maps to.
            let (px, py) = plan.scaled_to_frame(sx as f64, sy as f64);
            let ([l, top, rw, rh], _) = plan.source_rect(i);
            prop_assert!(px >= l - 1e-6 && px <= l + rw + 1e-6);
            prop_assert!(py >= top - 1e-6 && py <= top + rh + 1e-6);
            prop_assert!(px < w as f64 && py < h as f64);
        }
    }
}
