//! Coarse-to-fine text detection (`[tiling] mode = "guided"`): the model
//! first sees the whole frame at a coarse scale, chosen so the smallest text
//! the operator wants (`min_text_px`) is still a few pixels tall there; its
//! probability map, read at a low threshold, marks where text may be. Only
//! those regions then go through the model at full resolution, in windows of
//! two fixed sizes (so the CPU engine keeps one optimised plan per size).
//! Text large enough to be read well at the coarse scale keeps the coarse
//! result. This module is the geometry: candidates from the coarse map, and
//! the windows that cover them.

use imageproc::region_labelling::{connected_components, Connectivity};

use super::tiling::{scaled_size, Span, Tile, TilePlan, TilingConfig};

/// Text this tall (in coarse-map pixels) still lights up the map at the low
/// threshold; measured on PP-OCRv4 det, below ~4 px it fades out.
pub const COARSE_TEXT_PX: f32 = 6.0;

/// A candidate's extent: coarse-map values above this (0.1).
const LOW: u8 = 26;

/// A candidate must reach this (0.3) somewhere, or it is background texture.
const PEAK: u8 = 77;

/// A coarse detection whose box is at least this tall in the coarse map is
/// read well enough at that scale: DB's unclip grows a box to about 2.5
/// times its text's height, so this is text of about 8 px there.
pub const LARGE_BOX_COARSE_PX: f32 = 20.0;

/// Context kept around a candidate at full resolution, in scaled pixels (at
/// least; half the candidate's height when that is more, up to
/// `MARGIN_MAX`: a tall candidate is a block of lines, not one large line).
const MARGIN: f64 = 24.0;
const MARGIN_MAX: f64 = 48.0;

/// The coarse pass's scale for `min_text_px`, never above the fine scale.
pub fn coarse_scale(min_text_px: f32, fine_scale: f32) -> f32 {
    (COARSE_TEXT_PX / min_text_px.max(1.0)).min(fine_scale)
}

/// Candidate text regions in frame pixels (`[x0, y0, x1, y1]`) from the
/// coarse stitched map (`w`×`h`, `p × 255`) of a `frame_w`×`frame_h` frame.
pub fn candidates(map: &[u8], w: usize, h: usize, frame_w: u32, frame_h: u32) -> Vec<[f64; 4]> {
    let mut mask = image::GrayImage::new(w as u32, h as u32);
    for (o, &v) in mask.iter_mut().zip(map) {
        *o = if v > LOW { 255 } else { 0 };
    }
    let labels = connected_components(&mask, Connectivity::Eight, image::Luma([0u8]));
    // Per label: bounds and peak.
    let mut found: Vec<Option<([usize; 4], u8)>> = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        if *l == 0 {
            continue;
        }
        let l = *l as usize;
        if found.len() <= l {
            found.resize(l + 1, None);
        }
        let (x, y) = (i % w, i / w);
        let e = found[l].get_or_insert(([x, y, x + 1, y + 1], 0));
        e.0 = [
            e.0[0].min(x),
            e.0[1].min(y),
            e.0[2].max(x + 1),
            e.0[3].max(y + 1),
        ];
        e.1 = e.1.max(map[i]);
    }
    let (kx, ky) = (frame_w as f64 / w as f64, frame_h as f64 / h as f64);
    found
        .into_iter()
        .flatten()
        .filter(|(_, peak)| *peak >= PEAK)
        .map(|(b, _)| {
            [
                b[0] as f64 * kx,
                b[1] as f64 * ky,
                b[2] as f64 * kx,
                b[3] as f64 * ky,
            ]
        })
        .collect()
}

/// Regions (frame pixels) grown by their margin, in scaled pixels, merged
/// until none overlaps another.
fn grown_and_merged(regions: &[[f64; 4]], k: f64, sw: u32, sh: u32) -> Vec<[f64; 4]> {
    let mut out: Vec<[f64; 4]> = regions
        .iter()
        .map(|r| {
            let (x0, y0, x1, y1) = (r[0] * k, r[1] * k, r[2] * k, r[3] * k);
            let m = (0.5 * (y1 - y0)).clamp(MARGIN, MARGIN_MAX);
            [
                (x0 - m).max(0.0),
                (y0 - m).max(0.0),
                (x1 + m).min(sw as f64),
                (y1 + m).min(sh as f64),
            ]
        })
        .collect();
    loop {
        let mut merged = false;
        'outer: for i in 0..out.len() {
            for j in i + 1..out.len() {
                let (a, b) = (out[i], out[j]);
                if a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3] {
                    out[i] = [
                        a[0].min(b[0]),
                        a[1].min(b[1]),
                        a[2].max(b[2]),
                        a[3].max(b[3]),
                    ];
                    out.swap_remove(j);
                    merged = true;
                    break 'outer;
                }
            }
        }
        if !merged {
            return out;
        }
    }
}

/// Pixels at a window's inner edges that it does not contribute: the model
/// sees text cut there and marks the cut, which would join lines where
/// windows overlap.
const EDGE: u32 = 32;

/// Windows of `size` covering `[lo, hi)` of an axis `len` long: one
/// centred window when the extent fits inside its trimmed part, else
/// windows sharing `overlap` (more than twice `EDGE`). Each owns what it
/// shows but `EDGE` pixels at its inner edges; maps are combined by maximum.
fn axis_windows(lo: f64, hi: f64, len: u32, size: u32, overlap: u32) -> Vec<Span> {
    let window = |start: u32| {
        let valid = size.min(len - start);
        let end = start + valid;
        Span {
            start,
            size,
            valid,
            own_start: if start == 0 { 0 } else { start + EDGE },
            own_end: if end >= len { len } else { end - EDGE },
        }
    };
    if size >= len {
        return vec![window(0)];
    }
    let place =
        |centre: f64| ((centre - size as f64 / 2.0).round().max(0.0) as u32).min(len - size);
    let inner = (size - 2 * EDGE) as f64;
    let extent = hi - lo;
    if extent <= inner {
        return vec![window(place((lo + hi) / 2.0))];
    }
    // Windows' owned parts overlap by `overlap - 2 EDGE` and cover the extent.
    let stride = (size - overlap.clamp(2 * EDGE + 8, size / 2)) as f64;
    let n = ((extent - inner) / stride).ceil() as u32 + 1;
    let step = (extent - inner) / (n - 1) as f64;
    (0..n)
        .map(|i| window(place(lo + inner / 2.0 + i as f64 * step)))
        .collect()
}

/// The windows, as a plan over the scaled frame, that run `regions` (frame
/// pixels) at full resolution under `cfg`: each region is covered by
/// windows of half a tile or of a whole tile, whichever costs fewer pixels
/// (two shapes, so two optimised plans).
/// `None` when there is nothing to run.
pub fn window_plan(
    frame_w: u32,
    frame_h: u32,
    regions: &[[f64; 4]],
    cfg: &TilingConfig,
) -> Option<TilePlan> {
    let (sw, sh) = scaled_size(frame_w, frame_h, cfg.scale);
    let k = sw as f64 / frame_w as f64;
    let tile = cfg.tile;
    let half = (tile / 2).div_ceil(32) * 32;
    let mut tiles = Vec::new();
    for r in grown_and_merged(regions, k, sw, sh) {
        // Whichever of the two window sizes covers the region with fewer
        // pixels. A frame side shorter than the window: the window is that
        // side, rounded up to 32 and padded.
        let cover = |size: u32| {
            let (wx, wy) = (
                size.min(sw.div_ceil(32) * 32),
                size.min(sh.div_ceil(32) * 32),
            );
            let xs = axis_windows(r[0], r[2], sw, wx, cfg.overlap);
            let ys = axis_windows(r[1], r[3], sh, wy, cfg.overlap);
            let px = (xs.len() * ys.len()) as u64 * wx as u64 * wy as u64;
            (px, xs, ys)
        };
        let (small, large) = (cover(half), cover(tile));
        let (_, xs, ys) = if small.0 <= large.0 { small } else { large };
        for y in &ys {
            for x in &xs {
                let t = Tile { x: *x, y: *y };
                if !tiles.contains(&t) {
                    tiles.push(t);
                }
            }
        }
    }
    if tiles.is_empty() {
        return None;
    }
    // Windows of one shape run together.
    tiles.sort_by_key(|t| (t.hw(), t.y.start, t.x.start));
    Some(TilePlan {
        frame_w,
        frame_h,
        scaled_w: sw,
        scaled_h: sh,
        scale: k,
        tiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TilingConfig {
        TilingConfig {
            tile: 960,
            overlap: 128,
            ..TilingConfig::default()
        }
    }

    #[test]
    fn the_coarse_scale_follows_the_smallest_text_wanted() {
        assert!((coarse_scale(12.0, 1.0) - 0.5).abs() < 1e-6);
        assert!((coarse_scale(TilingConfig::default().min_text_px, 1.0) - 0.6).abs() < 1e-6);
        assert_eq!(
            coarse_scale(3.0, 1.0),
            1.0,
            "never finer than the fine pass"
        );
        assert!(coarse_scale(24.0, 2.0) < coarse_scale(12.0, 2.0));
    }

    #[test]
    fn candidates_are_blobs_that_reach_the_peak() {
        let (w, h) = (100, 50);
        let mut map = vec![0u8; w * h];
        // A text-like blob (peak 200) and faint texture (peak 50).
        for y in 10..14 {
            for x in 20..40 {
                map[y * w + x] = if x == 30 { 200 } else { 60 };
            }
        }
        for y in 30..33 {
            for x in 60..70 {
                map[y * w + x] = 50;
            }
        }
        let c = candidates(&map, w, h, 400, 200);
        assert_eq!(c, vec![[80.0, 40.0, 160.0, 56.0]]);
    }

    #[test]
    fn small_regions_get_half_tiles_and_large_ones_whole_tiles_inside_the_frame() {
        let regions = [
            [100.0, 100.0, 300.0, 120.0],
            [3000.0, 1900.0, 3200.0, 1916.0],
            // A tall band across the frame: whole tiles cost less.
            [0.0, 1000.0, 3840.0, 1700.0],
        ];
        let plan = window_plan(3840, 2160, &regions, &cfg()).unwrap();
        let shapes = plan.shapes();
        assert_eq!(shapes, vec![(480, 480), (960, 960)], "two shapes");
        for t in &plan.tiles {
            assert!(t.x.start + t.x.valid <= 3840 && t.y.start + t.y.valid <= 2160);
            assert_eq!((t.x.valid, t.y.valid), (t.x.size, t.y.size));
        }
        // Covered by what a window owns (its trimmed part).
        let covers = |r: [f64; 4]| {
            plan.tiles.iter().any(|t| {
                t.x.own_start as f64 <= r[0]
                    && r[2] <= t.x.own_end as f64
                    && t.y.own_start as f64 <= r[1]
                    && r[3] <= t.y.own_end as f64
            })
        };
        assert!(covers(regions[0]) && covers(regions[1]));
        // The band: every column of it is inside some window.
        for x in (0..3840).step_by(100) {
            let x = x as f64;
            assert!(covers([x, 1000.0, x + 1.0, 1700.0]), "column {x}");
        }
        let px: u64 = plan
            .tiles
            .iter()
            .map(|t| t.x.size as u64 * t.y.size as u64)
            .sum();
        assert!(
            px < 3840 * 2160 * 7 / 10,
            "fewer pixels than the frame: {px}"
        );
        // A short band takes one row of half tiles.
        let band = window_plan(3840, 2160, &[[0.0, 1000.0, 3840.0, 1300.0]], &cfg()).unwrap();
        assert_eq!(band.shapes(), vec![(480, 480)]);
        assert!(band
            .tiles
            .iter()
            .all(|t| t.y.start == band.tiles[0].y.start));
    }

    #[test]
    fn touching_regions_merge_and_a_small_frame_gets_a_padded_window() {
        let regions = [[10.0, 10.0, 100.0, 30.0], [110.0, 10.0, 200.0, 30.0]];
        let plan = window_plan(400, 300, &regions, &cfg()).unwrap();
        assert_eq!(plan.tiles.len(), 1);
        let t = plan.tiles[0];
        assert_eq!((t.x.size, t.y.size), (416, 320));
        assert_eq!((t.x.valid, t.y.valid), (400, 300));
        assert!(window_plan(400, 300, &[], &cfg()).is_none());
    }
}
