//! DB (differentiable binarisation) post-processing: a text probability map
//! in, text quads out. Behaves like PaddleOCR/RapidOCR's `DBPostProcess` with
//! `score_mode = "fast"`: binarise, dilate 2×2, contours, min-area rectangle,
//! mean-probability score, unclip, map back to frame pixels.

use geo::{Coord, MinimumRotatedRect, MultiPoint, Point};
use image::GrayImage;
use imageproc::contours::{find_contours, BorderType};

use super::{DecodeConfig, Detection};

/// Boxes whose short side is under this many map pixels are noise.
const MIN_SIZE: f64 = 3.0;

/// Probabilities, either straight from a model output or quantised to
/// `p × 255` (stitched tile maps are kept as bytes: a quarter of the memory,
/// and 1/255 is far below any threshold anyone sets).
#[derive(Debug, Clone, Copy)]
pub enum MapData<'a> {
    /// Model output.
    F32(&'a [f32]),
    /// Quantised map.
    U8(&'a [u8]),
}

/// A probability map, row-major.
#[derive(Debug, Clone, Copy)]
pub struct ProbMap<'a> {
    /// Values.
    pub data: MapData<'a>,
    /// Map width.
    pub width: usize,
    /// Map height.
    pub height: usize,
}

impl<'a> ProbMap<'a> {
    /// A map over model output.
    pub fn f32(data: &'a [f32], width: usize, height: usize) -> Self {
        ProbMap {
            data: MapData::F32(data),
            width,
            height,
        }
    }

    /// A map over quantised bytes.
    pub fn u8(data: &'a [u8], width: usize, height: usize) -> Self {
        ProbMap {
            data: MapData::U8(data),
            width,
            height,
        }
    }

    fn len(&self) -> usize {
        match self.data {
            MapData::F32(d) => d.len(),
            MapData::U8(d) => d.len(),
        }
    }

    fn at(&self, x: usize, y: usize) -> f32 {
        let i = y * self.width + x;
        match self.data {
            MapData::F32(d) => d[i],
            MapData::U8(d) => d[i] as f32 / 255.0,
        }
    }
}

/// The binary text mask, dilated 2×2 when asked, in one buffer: big stitched
/// maps must not need a second frame-sized copy.
fn binarise(map: &ProbMap<'_>, threshold: f32, dilate: bool) -> GrayImage {
    let (w, h) = (map.width, map.height);
    let mut bitmap = GrayImage::new(w as u32, h as u32);
    {
        let buf: &mut [u8] = &mut bitmap;
        match map.data {
            MapData::F32(d) => {
                for (o, v) in buf.iter_mut().zip(d) {
                    *o = if *v > threshold { 255 } else { 0 };
                }
            }
            MapData::U8(d) => {
                for (o, v) in buf.iter_mut().zip(d) {
                    *o = if *v as f32 / 255.0 > threshold {
                        255
                    } else {
                        0
                    };
                }
            }
        }
        if dilate {
            // OpenCV's 2×2 kernel has its anchor at (1,1): a pixel lights up
            // when it or its left, upper or upper-left neighbour is set.
            // Walking backwards reads neighbours before they are overwritten.
            for y in (0..h).rev() {
                for x in (0..w).rev() {
                    let i = y * w + x;
                    let mut v = buf[i];
                    if x > 0 {
                        v |= buf[i - 1];
                    }
                    if y > 0 {
                        v |= buf[i - w];
                        if x > 0 {
                            v |= buf[i - w - 1];
                        }
                    }
                    buf[i] = v;
                }
            }
        }
    }
    bitmap
}

/// Decodes `map` into text detections in a `dest_w`×`dest_h` frame.
pub fn decode(
    cfg: &DecodeConfig,
    map: ProbMap<'_>,
    dest_w: u32,
    dest_h: u32,
    label: &str,
) -> Vec<Detection> {
    assert_eq!(map.len(), map.width * map.height, "map size mismatch");
    let bitmap = binarise(&map, cfg.threshold, cfg.use_dilation);
    let sx = dest_w as f64 / map.width as f64;
    let sy = dest_h as f64 / map.height as f64;
    let mut out = Vec::new();
    // Holes (background inside a text blob) never hold text of their own;
    // PaddleOCR scores and mostly drops them, we skip them up front.
    let outers = find_contours::<i32>(&bitmap)
        .into_iter()
        .filter(|c| c.border_type == BorderType::Outer)
        .take(cfg.max_candidates);
    for contour in outers {
        let points: Vec<Point<f64>> = contour
            .points
            .iter()
            .map(|p| Point::new(p.x as f64, p.y as f64))
            .collect();
        let Some(rect) = min_area_rect(&MultiPoint::new(points)) else {
            continue;
        };
        if rect.short_side() < MIN_SIZE {
            continue;
        }
        let score = mean_inside(map, &rect.corners());
        if score < cfg.box_threshold {
            continue;
        }
        let grown = rect.unclip(cfg.unclip_ratio as f64);
        if grown.short_side() < MIN_SIZE + 2.0 {
            continue;
        }
        let quad = order_corners(grown.corners()).map(|c| {
            [
                (c.x * sx).round().clamp(0.0, dest_w as f64) as f32,
                (c.y * sy).round().clamp(0.0, dest_h as f64) as f32,
            ]
        });
        out.push(Detection::from_quad(label, 0, score, quad));
    }
    sort_reading_order(&mut out);
    out
}

/// Tops closer than this many pixels are one line of text.
const SAME_LINE_PX: f32 = 10.0;

/// Reading order, as RapidOCR sorts its boxes: top to bottom, then left to
/// right within a line.
///
/// Comparing "x when the tops are within 10 px, else y" is not transitive
/// (a ≈ b and b ≈ c but a ≉ c), and Rust's sort panics on such a comparator on
/// dense pages. So lines are formed first, from boxes sorted by top: a box
/// starts a new line when its top is 10 px or more below the line's first top.
/// Then each line is sorted by x. Every sort here is by a total order.
pub fn sort_reading_order(dets: &mut [Detection]) {
    dets.sort_by(|a, b| {
        a.bbox[1]
            .total_cmp(&b.bbox[1])
            .then(a.bbox[0].total_cmp(&b.bbox[0]))
    });
    let mut start = 0;
    while start < dets.len() {
        let top = dets[start].bbox[1];
        let end = start
            + dets[start..]
                .iter()
                .take_while(|d| d.bbox[1] - top < SAME_LINE_PX)
                .count();
        dets[start..end].sort_by(|a, b| {
            a.bbox[0]
                .total_cmp(&b.bbox[0])
                .then(a.bbox[1].total_cmp(&b.bbox[1]))
        });
        start = end.max(start + 1);
    }
}

/// A rotated rectangle: centre, unit axis, half extents.
#[derive(Debug, Clone, Copy)]
struct RotatedRect {
    centre: Coord<f64>,
    axis: Coord<f64>,
    half: (f64, f64),
}

impl RotatedRect {
    fn short_side(&self) -> f64 {
        2.0 * self.half.0.min(self.half.1)
    }

    fn corners(&self) -> [Coord<f64>; 4] {
        let u = self.axis;
        let v = Coord { x: -u.y, y: u.x };
        let (a, b) = self.half;
        let c = self.centre;
        [
            c - u * a - v * b,
            c + u * a - v * b,
            c + u * a + v * b,
            c - u * a + v * b,
        ]
    }

    /// Pyclipper's round-join offset of a rectangle by
    /// `d = area × ratio / perimeter`, followed by a min-area rectangle (as
    /// PaddleOCR does), is exactly the rectangle grown by `d` on every side.
    fn unclip(&self, ratio: f64) -> RotatedRect {
        let (w, h) = (2.0 * self.half.0, 2.0 * self.half.1);
        let d = w * h * ratio / (2.0 * (w + h));
        RotatedRect {
            half: (self.half.0 + d, self.half.1 + d),
            ..*self
        }
    }
}

fn min_area_rect(points: &MultiPoint<f64>) -> Option<RotatedRect> {
    let poly = points.minimum_rotated_rect()?;
    let ring: Vec<Coord<f64>> = poly.exterior().coords().copied().collect();
    if ring.len() < 4 {
        return None;
    }
    let (p0, p1, p2) = (ring[0], ring[1], ring[2]);
    let e1 = p1 - p0;
    let e2 = p2 - p1;
    let (l1, l2) = (e1.x.hypot(e1.y), e2.x.hypot(e2.y));
    let axis = if l1 > 1e-9 {
        e1 / l1
    } else if l2 > 1e-9 {
        Coord {
            x: e2.y / l2,
            y: -e2.x / l2,
        }
    } else {
        Coord { x: 1.0, y: 0.0 }
    };
    Some(RotatedRect {
        centre: (p0 + p2) / 2.0,
        axis,
        half: (l1 / 2.0, l2 / 2.0),
    })
}

/// PaddleOCR's `get_mini_boxes` order: top-left, top-right, bottom-right,
/// bottom-left (by x first, then y within each pair).
fn order_corners(mut c: [Coord<f64>; 4]) -> [Coord<f64>; 4] {
    c.sort_by(|a, b| a.x.total_cmp(&b.x));
    let (tl, bl) = if c[0].y <= c[1].y {
        (c[0], c[1])
    } else {
        (c[1], c[0])
    };
    let (tr, br) = if c[2].y <= c[3].y {
        (c[2], c[3])
    } else {
        (c[3], c[2])
    };
    [tl, tr, br, bl]
}

/// Mean probability over the map pixels inside the quad (edges included, as
/// OpenCV's `fillPoly` includes them).
fn mean_inside(map: ProbMap<'_>, quad: &[Coord<f64>; 4]) -> f32 {
    let clampx = |v: f64| v.clamp(0.0, (map.width - 1) as f64) as usize;
    let clampy = |v: f64| v.clamp(0.0, (map.height - 1) as f64) as usize;
    let xmin = clampx(quad.iter().map(|c| c.x).fold(f64::MAX, f64::min).floor());
    let xmax = clampx(quad.iter().map(|c| c.x).fold(f64::MIN, f64::max).ceil());
    let ymin = clampy(quad.iter().map(|c| c.y).fold(f64::MAX, f64::min).floor());
    let ymax = clampy(quad.iter().map(|c| c.y).fold(f64::MIN, f64::max).ceil());
    // Signed distance to each edge; the quad's winding decides the sign.
    let edges: Vec<(Coord<f64>, Coord<f64>, f64)> = (0..4)
        .map(|i| {
            let a = quad[i];
            let d = quad[(i + 1) % 4] - a;
            (a, d, d.x.hypot(d.y).max(1e-9))
        })
        .collect();
    let area2: f64 = (0..4)
        .map(|i| quad[i].x * quad[(i + 1) % 4].y - quad[(i + 1) % 4].x * quad[i].y)
        .sum();
    let sign = if area2 >= 0.0 { 1.0 } else { -1.0 };
    let (mut sum, mut n) = (0f64, 0usize);
    for y in ymin..=ymax {
        for x in xmin..=xmax {
            let p = Coord {
                x: x as f64,
                y: y as f64,
            };
            let inside = edges.iter().all(|(a, d, len)| {
                let cross = d.x * (p.y - a.y) - d.y * (p.x - a.x);
                sign * cross / len >= -0.5
            });
            if inside {
                sum += map.at(x, y) as f64;
                n += 1;
            }
        }
    }
    if n == 0 {
        0.0
    } else {
        (sum / n as f64) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map of `w`×`h` with the given rectangles filled at probability `p`.
    fn map_with(w: usize, h: usize, rects: &[(usize, usize, usize, usize, f32)]) -> Vec<f32> {
        let mut m = vec![0.0f32; w * h];
        for &(x0, y0, x1, y1, p) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    m[y * w + x] = p;
                }
            }
        }
        m
    }

    fn run(data: &[f32], w: usize, h: usize, dest: (u32, u32)) -> Vec<Detection> {
        decode(
            &DecodeConfig::default(),
            ProbMap::f32(data, w, h),
            dest.0,
            dest.1,
            "text",
        )
    }

    #[test]
    fn one_rectangle_becomes_one_unclipped_box() {
        // 40×10 block: after 2×2 dilation the contour spans x 20..=60, y 30..=40
        // (pixel centres), a 40×10 rectangle; d = 400·1.6/100 = 6.4.
        let m = map_with(100, 80, &[(20, 30, 60, 40, 0.9)]);
        let dets = run(&m, 100, 80, (100, 80));
        assert_eq!(dets.len(), 1);
        let d = &dets[0];
        // Dilation grows the region one pixel right and down, so the mean
        // covers 41×11 pixels of which 40×10 hold 0.9 — as in PaddleOCR.
        assert!(
            (d.score - 0.9 * 400.0 / 451.0).abs() < 0.002,
            "score {}",
            d.score
        );
        let [x0, y0, x1, y1] = d.bbox;
        assert!(
            (x0 - 13.6).abs() <= 1.0 && (x1 - 66.4).abs() <= 1.0,
            "{:?}",
            d.bbox
        );
        assert!(
            (y0 - 23.6).abs() <= 1.0 && (y1 - 46.4).abs() <= 1.0,
            "{:?}",
            d.bbox
        );
        let quad = d.quad.unwrap();
        assert!(
            quad[0][0] < quad[1][0] && quad[1][1] < quad[2][1],
            "clockwise from top-left: {quad:?}"
        );
    }

    #[test]
    fn boxes_are_scaled_to_the_destination_frame() {
        let m = map_with(100, 50, &[(20, 20, 60, 30, 0.9)]);
        let small = run(&m, 100, 50, (100, 50));
        let big = run(&m, 100, 50, (400, 100));
        assert_eq!((small.len(), big.len()), (1, 1));
        assert!((big[0].bbox[0] - small[0].bbox[0] * 4.0).abs() <= 4.0);
        assert!((big[0].bbox[3] - small[0].bbox[3] * 2.0).abs() <= 2.0);
        assert!(big[0].bbox[2] <= 400.0 && big[0].bbox[3] <= 100.0);
    }

    #[test]
    fn low_scores_tiny_regions_and_empty_maps_are_dropped() {
        // Above threshold but mean below box_threshold.
        let faint = map_with(100, 50, &[(10, 10, 60, 30, 0.4)]);
        assert!(run(&faint, 100, 50, (100, 50)).is_empty());
        // Two pixels high: short side under MIN_SIZE.
        let thin = map_with(100, 50, &[(10, 10, 60, 11, 0.95)]);
        assert!(run(&thin, 100, 50, (100, 50)).is_empty());
        let empty = vec![0.0; 100 * 50];
        assert!(run(&empty, 100, 50, (100, 50)).is_empty());
    }

    #[test]
    fn separate_lines_stay_separate_and_come_in_reading_order() {
        let m = map_with(
            200,
            120,
            &[
                (120, 10, 180, 22, 0.9),
                (10, 12, 100, 24, 0.9),
                (10, 70, 150, 85, 0.9),
            ],
        );
        let dets = run(&m, 200, 120, (200, 120));
        assert_eq!(dets.len(), 3);
        assert!(dets[0].bbox[0] < dets[1].bbox[0], "same line left to right");
        assert!(dets[2].bbox[1] > dets[0].bbox[3] - 10.0, "second line last");
    }

    #[test]
    fn rotated_text_gets_a_rotated_quad() {
        let (w, h) = (120usize, 120usize);
        let mut m = vec![0.0f32; w * h];
        // A 60×8 bar at 45°.
        for t in 0..60 {
            for s in 0..8 {
                let x = 30.0 + t as f64 * std::f64::consts::FRAC_1_SQRT_2
                    - s as f64 * std::f64::consts::FRAC_1_SQRT_2;
                let y = 30.0
                    + t as f64 * std::f64::consts::FRAC_1_SQRT_2
                    + s as f64 * std::f64::consts::FRAC_1_SQRT_2;
                for (dx, dy) in [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5)] {
                    m[((y + dy) as usize) * w + (x + dx) as usize] = 0.9;
                }
            }
        }
        let dets = run(&m, w, h, (w as u32, h as u32));
        assert_eq!(dets.len(), 1);
        let q = dets[0].quad.unwrap();
        let dx = q[1][0] - q[0][0];
        let dy = q[1][1] - q[0][1];
        let angle = dy.atan2(dx).to_degrees().abs();
        assert!(
            (angle - 45.0).abs() < 8.0 || (angle - 135.0).abs() < 8.0,
            "angle {angle}, quad {q:?}"
        );
    }

    #[test]
    fn max_candidates_caps_the_work() {
        let rects: Vec<_> = (0..10)
            .map(|i| (5 + i * 20, 10, 15 + i * 20, 20, 0.9))
            .collect();
        let m = map_with(210, 30, &rects);
        assert_eq!(run(&m, 210, 30, (210, 30)).len(), 10);
        let cfg = DecodeConfig {
            max_candidates: 4,
            ..DecodeConfig::default()
        };
        let dets = decode(&cfg, ProbMap::f32(&m, 210, 30), 210, 30, "text");
        assert_eq!(dets.len(), 4);
    }

    #[test]
    fn dilation_grows_right_and_down_like_opencv() {
        let mut m = vec![0.0f32; 5 * 5];
        m[2 * 5 + 2] = 0.9;
        let b = binarise(&ProbMap::f32(&m, 5, 5), 0.3, true);
        let lit: Vec<(u32, u32)> = b
            .enumerate_pixels()
            .filter(|p| p.2 .0[0] == 255)
            .map(|p| (p.0, p.1))
            .collect();
        assert_eq!(lit, vec![(2, 2), (3, 2), (2, 3), (3, 3)]);
        let plain = binarise(&ProbMap::f32(&m, 5, 5), 0.3, false);
        assert_eq!(plain.pixels().filter(|p| p.0[0] == 255).count(), 1);
    }

    #[test]
    fn a_quantised_map_decodes_like_the_float_map() {
        let m = map_with(
            300,
            120,
            &[
                (20, 20, 180, 40, 0.9),
                (30, 70, 260, 95, 0.8),
                (200, 10, 210, 15, 0.4),
            ],
        );
        let q: Vec<u8> = m.iter().map(|v| (v * 255.0).round() as u8).collect();
        let cfg = DecodeConfig::default();
        let a = decode(&cfg, ProbMap::f32(&m, 300, 120), 600, 240, "text");
        let b = decode(&cfg, ProbMap::u8(&q, 300, 120), 600, 240, "text");
        assert_eq!(a.len(), 2);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.bbox, y.bbox);
            assert!((x.score - y.score).abs() < 0.005);
        }
    }

    #[test]
    fn validate_names_bad_keys() {
        let cfg = DecodeConfig {
            threshold: 0.0,
            box_threshold: 1.2,
            unclip_ratio: -1.0,
            max_candidates: 0,
            score_threshold: Some(1.5),
            iou_threshold: 0.0,
            max_detections: 0,
            top_k: 0,
            ..DecodeConfig::default()
        };
        let keys: Vec<_> = cfg.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            vec![
                "threshold",
                "box_threshold",
                "unclip_ratio",
                "max_candidates",
                "score_threshold",
                "iou_threshold",
                "max_detections",
                "top_k"
            ]
        );
        assert!(DecodeConfig::default().validate().is_empty());
    }
}
