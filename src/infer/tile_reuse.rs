//! Tile reuse for streams with `motion = true` and tiling: between full
//! passes, only the tiles whose picture changed since they last ran go
//! through the model; the others keep their part of the stitched
//! probability map from that run. One DB decode then reads the whole map,
//! so a still label in an unchanged tile is found again at no model cost,
//! and a line across a seam between a fresh and a kept tile is still one
//! region.
//!
//! Change is judged against what each tile showed when it last ran (its
//! own reference), not against the previous frame, so frames that were
//! dropped, skipped or inferred out of order cannot hide a change.

use std::time::{Duration, Instant};

use image::RgbImage;

use super::grey::{self, SmallGrey, CHANGE_THRESHOLD};
use super::tiling::{TilePlan, TilingConfig};

/// Cells (of the small grey copy) that must change for a tile to run again:
/// the motion gate's rule, per tile.
const MIN_CHANGED: usize = 3;

/// The plan a reuse state belongs to; another plan starts afresh.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanKey {
    frame: (u32, u32),
    scaled: (u32, u32),
    tiles: Vec<(u32, u32, u32, u32)>,
}

impl PlanKey {
    fn of(plan: &TilePlan) -> PlanKey {
        PlanKey {
            frame: (plan.frame_w, plan.frame_h),
            scaled: (plan.scaled_w, plan.scaled_h),
            tiles: plan
                .tiles
                .iter()
                .map(|t| (t.x.start, t.y.start, t.x.size, t.y.size))
                .collect(),
        }
    }
}

/// What one tile showed when it last ran: its cells of the small copy.
#[derive(Debug, Clone)]
struct Reference {
    cells: (usize, usize, usize, usize),
    pixels: Vec<f32>,
}

/// One stream's reuse state: the stitched map of its last tiled pass and
/// each tile's reference picture. Shared by the workers behind a mutex; a
/// worker that finds it busy runs a plain full pass.
#[derive(Debug)]
pub struct TileReuse {
    refresh: Duration,
    grey: SmallGrey,
    key: Option<PlanKey>,
    refs: Vec<Reference>,
    /// The stitched map (the scaled frame's size, `p × 255`).
    pub(crate) map: Vec<u8>,
    last_full: Option<Instant>,
}

/// How many tiles a pass ran and how many it kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TileCounts {
    /// Tiles run through the model.
    pub run: u32,
    /// Tiles whose map was kept from an earlier run.
    pub reused: u32,
}

impl TileReuse {
    /// A state with nothing kept: the first pass runs every tile, and so
    /// does one at least every `refresh`.
    pub fn new(refresh: Duration) -> TileReuse {
        TileReuse {
            refresh,
            grey: SmallGrey::default(),
            key: None,
            refs: Vec::new(),
            map: Vec::new(),
            last_full: None,
        }
    }

    /// Bytes it holds for `width`×`height` frames under `tiling`: the
    /// stitched map, the grey copy and the tiles' references (which overlap,
    /// so up to twice the copy).
    pub fn planned_bytes(width: u32, height: u32, tiling: &TilingConfig) -> u64 {
        let (sw, sh) = super::tiling::scaled_size(width, height, tiling.scale);
        let (gw, gh) = grey::small_size(width, height);
        sw as u64 * sh as u64 + grey::planned_bytes(width, height) + 2 * 4 * gw as u64 * gh as u64
    }

    /// Forgets what was kept: the next pass runs every tile (after a
    /// failed pass, whose map is partial).
    pub fn invalidate(&mut self) {
        self.key = None;
        self.refs.clear();
        self.last_full = None;
    }

    /// Which tiles of `plan` to run on `img` at `now`: all of them for a new
    /// plan or when the refresh is due, else those whose picture changed
    /// since they last ran. The tiles chosen take `img` as their reference.
    /// `true` in the second place when the kept map is to be reused.
    pub(crate) fn select(
        &mut self,
        img: &RgbImage,
        plan: &TilePlan,
        now: Instant,
    ) -> (Vec<bool>, bool) {
        self.grey.update(img);
        let key = PlanKey::of(plan);
        let map_len = plan.scaled_w as usize * plan.scaled_h as usize;
        let full = self.key.as_ref() != Some(&key)
            || self.map.len() != map_len
            || self.refs.len() != plan.tiles.len()
            || self
                .last_full
                .is_none_or(|t| now.duration_since(t) >= self.refresh);
        if full {
            self.refs = (0..plan.tiles.len())
                .map(|i| self.reference(plan, i))
                .collect();
            self.key = Some(key);
            self.last_full = Some(now);
            return (vec![true; plan.tiles.len()], false);
        }
        let run: Vec<bool> = (0..plan.tiles.len())
            .map(|i| self.changed(&self.refs[i]) >= MIN_CHANGED)
            .collect();
        for (i, &r) in run.iter().enumerate() {
            if r {
                self.refs[i] = self.reference(plan, i);
            }
        }
        (run, true)
    }

    fn reference(&self, plan: &TilePlan, i: usize) -> Reference {
        let ([x, y, w, h], _) = plan.source_rect(i);
        let cells = self.grey.cells([x, y, x + w, y + h]);
        let (x0, y0, x1, y1) = cells;
        let sw = self.grey.size.0 as usize;
        let mut pixels = Vec::with_capacity((x1 - x0) * (y1 - y0));
        for yy in y0..y1 {
            pixels.extend_from_slice(&self.grey.pixels[yy * sw + x0..yy * sw + x1]);
        }
        Reference { cells, pixels }
    }

    /// Cells of `r`'s area that differ from it in the current copy.
    fn changed(&self, r: &Reference) -> usize {
        let (x0, y0, x1, y1) = r.cells;
        let sw = self.grey.size.0 as usize;
        let mut n = 0;
        for (k, yy) in (y0..y1).enumerate() {
            let now = &self.grey.pixels[yy * sw + x0..yy * sw + x1];
            let then = &r.pixels[k * (x1 - x0)..(k + 1) * (x1 - x0)];
            n += now
                .iter()
                .zip(then)
                .filter(|(a, b)| (*a - *b).abs() > CHANGE_THRESHOLD)
                .count();
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::tiling::TilingMode;

    fn plan() -> TilePlan {
        let cfg = TilingConfig {
            mode: TilingMode::Tiles,
            tile: 320,
            overlap: 32,
            ..TilingConfig::default()
        };
        TilePlan::new(1280, 640, &cfg)
    }

    fn frame(square: Option<(u32, u32)>) -> RgbImage {
        crate::infer::grey::checker_scene(1280, 640, square)
    }

    #[test]
    fn only_tiles_whose_picture_changed_since_they_ran_run_again() {
        let plan = plan();
        let n = plan.tiles.len();
        assert!(n >= 8, "{n} tiles");
        let t0 = Instant::now();
        let mut r = TileReuse::new(Duration::from_secs(10));
        let (run, reuse) = r.select(&frame(None), &plan, t0);
        assert_eq!((run.iter().filter(|x| **x).count(), reuse), (n, false));
        r.map = vec![0; (plan.scaled_w * plan.scaled_h) as usize];
        // Nothing changed: nothing runs, the map is kept.
        let (run, reuse) = r.select(&frame(None), &plan, t0 + Duration::from_secs(1));
        assert!(reuse && run.iter().all(|x| !x), "{run:?}");
        // A square in the top-left corner: the tiles showing it run.
        let (run, _) = r.select(&frame(Some((40, 40))), &plan, t0 + Duration::from_secs(2));
        let ran: Vec<usize> = (0..n).filter(|&i| run[i]).collect();
        assert!(!ran.is_empty());
        for &i in &ran {
            let ([x, y, ..], _) = plan.source_rect(i);
            assert!(x < 100.0 && y < 100.0, "tile {i} at {x},{y} ran");
        }
        // The same frame again: those tiles took it as their reference.
        let (run, _) = r.select(&frame(Some((40, 40))), &plan, t0 + Duration::from_secs(3));
        assert!(run.iter().all(|x| !x), "{run:?}");
        // A dropped frame does not hide a change: the square went away and
        // came back elsewhere; the corner tiles still differ from what they
        // last ran on.
        let (run, _) = r.select(
            &frame(Some((1200, 600))),
            &plan,
            t0 + Duration::from_secs(4),
        );
        for &i in &ran {
            assert!(run[i], "tile {i} runs again: the square left it");
        }
        assert!(run[n - 1], "the bottom-right tile runs");
        // The refresh runs everything.
        let (run, reuse) = r.select(
            &frame(Some((1200, 600))),
            &plan,
            t0 + Duration::from_secs(15),
        );
        assert!(!reuse && run.iter().all(|x| *x));
        // Another plan starts afresh.
        r.invalidate();
        let (_, reuse) = r.select(&frame(None), &plan, t0 + Duration::from_secs(16));
        assert!(!reuse);
    }
}
