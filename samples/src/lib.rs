//! Seeded images with text rendered at known places, and recall scoring.
//! Shared by the integration tests, the benches and the quick start's
//! `make-samples`.

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};
use image::{Rgb, RgbImage};

/// Where the tests look for a TrueType font (Debian: fonts-dejavu-core).
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
];

/// Loads the test font, or the one `SAMPLES_FONT` names (benchmark sets in
/// another typeface), or panics saying what to install.
pub fn font() -> FontVec {
    if let Some(path) = std::env::var_os("SAMPLES_FONT") {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "SAMPLES_FONT={}: cannot read it ({e})",
                path.to_string_lossy()
            )
        });
        return FontVec::try_from_vec(bytes).expect("SAMPLES_FONT is a valid TrueType font");
    }
    for p in FONT_PATHS {
        if let Ok(bytes) = std::fs::read(p) {
            return FontVec::try_from_vec(bytes).expect("valid TrueType font");
        }
    }
    panic!(
        "no test font found at {FONT_PATHS:?}; install it with: apt-get install fonts-dejavu-core"
    );
}

/// One rendered line of text and its ink bounds `[x1, y1, x2, y2]`.
#[derive(Debug, Clone)]
pub struct TextBox {
    pub text: String,
    pub bbox: [f32; 4],
}

/// SplitMix64: a tiny seeded generator so images are the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % (hi - lo) as u64) as u32
    }
}

const WORDS: [&str; 16] = [
    "LOT", "PART", "SERIAL", "BATCH", "EXP", "Pallet", "Line", "Gate", "Zone", "Order", "Label",
    "Scan", "Shift", "Station", "Bay", "Dock",
];

fn phrase(rng: &mut Rng) -> String {
    let word = WORDS[rng.range(0, WORDS.len() as u32) as usize];
    format!("{word} {}-{}", rng.range(10, 999), rng.range(1000, 99999))
}

/// Draws `text` with its left baseline at (x, y); returns the ink bounds.
pub fn draw_text(
    img: &mut RgbImage,
    font: &FontVec,
    px: f32,
    x: f32,
    y: f32,
    text: &str,
    color: [u8; 3],
) -> Option<[f32; 4]> {
    let scaled = font.as_scaled(PxScale::from(px));
    let mut caret = x;
    let mut bounds: Option<[f32; 4]> = None;
    let mut prev = None;
    for ch in text.chars() {
        let id = font.glyph_id(ch);
        if let Some(p) = prev {
            caret += scaled.kern(p, id);
        }
        let glyph = id.with_scale_and_position(PxScale::from(px), ab_glyph::point(caret, y));
        caret += scaled.h_advance(id);
        prev = Some(id);
        let Some(outline) = font.outline_glyph(glyph) else {
            continue;
        };
        let b = outline.px_bounds();
        outline.draw(|gx, gy, cov| {
            let (xx, yy) = (b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32);
            if xx < 0 || yy < 0 || xx >= img.width() as i32 || yy >= img.height() as i32 {
                return;
            }
            let p = img.get_pixel_mut(xx as u32, yy as u32);
            for (ch, ink) in p.0.iter_mut().zip(color) {
                *ch = (*ch as f32 * (1.0 - cov) + ink as f32 * cov).round() as u8;
            }
        });
        let nb = [b.min.x, b.min.y, b.max.x, b.max.y];
        bounds = Some(match bounds {
            None => nb,
            Some(o) => [
                o[0].min(nb[0]),
                o[1].min(nb[1]),
                o[2].max(nb[2]),
                o[3].max(nb[3]),
            ],
        });
    }
    bounds
}

/// A `width`×`height` image with `lines` text lines of `px_lo..px_hi` pixel
/// font size at seeded places, on a light textured background. Lines never
/// overlap: each gets its own horizontal band.
pub fn render(
    width: u32,
    height: u32,
    seed: u64,
    lines: usize,
    px_lo: u32,
    px_hi: u32,
) -> (RgbImage, Vec<TextBox>) {
    let font = font();
    let mut rng = Rng::new(seed);
    let base = [
        rng.range(200, 250) as u8,
        rng.range(200, 250) as u8,
        rng.range(200, 250) as u8,
    ];
    let mut img = RgbImage::from_fn(width, height, |x, y| {
        // A gentle gradient so the background is not flat.
        let shade = ((x + y) % 64) as i32 / 8 - 4;
        Rgb(base.map(|c| (c as i32 + shade).clamp(0, 255) as u8))
    });
    let band = height / lines as u32;
    let mut boxes = Vec::new();
    for i in 0..lines {
        let px = rng.range(px_lo, px_hi + 1) as f32;
        let text = phrase(&mut rng);
        let approx_w = px * 0.62 * text.len() as f32;
        let max_x = (width as f32 - approx_w - 8.0).max(9.0) as u32;
        let x = rng.range(8, max_x) as f32;
        let top = i as u32 * band;
        let slack = band.saturating_sub(px as u32 + 8).max(1);
        let y = (top + 4 + rng.range(0, slack)) as f32 + px * 0.8;
        let color = [
            rng.range(0, 60) as u8,
            rng.range(0, 60) as u8,
            rng.range(0, 80) as u8,
        ];
        if let Some(bbox) = draw_text(&mut img, &font, px, x, y, &text, color) {
            if bbox[2] <= width as f32 && bbox[3] <= height as f32 {
                boxes.push(TextBox { text, bbox });
            }
        }
    }
    (img, boxes)
}

/// A cluttered scene (shelves, boxes, shadows: rectangles of many shades
/// with a little texture) with `labels` small paper labels on it, each a
/// light patch with one line of `px_lo..=px_hi` px text: what a camera over
/// a warehouse sees. Seeded like `render`.
pub fn render_busy(
    width: u32,
    height: u32,
    seed: u64,
    labels: usize,
    px_lo: u32,
    px_hi: u32,
) -> (RgbImage, Vec<TextBox>) {
    let font = font();
    let mut rng = Rng::new(seed);
    let mut img = RgbImage::from_fn(width, height, |x, y| {
        let v = (90 + ((x / 7 + y / 5) % 9) * 3) as u8;
        Rgb([v, v.saturating_add(4), v.saturating_sub(6)])
    });
    // Clutter: rectangles of random shade and size, some with stripes.
    for _ in 0..(width as u64 * height as u64 / 40_000) {
        let (w, h) = (rng.range(20, 400), rng.range(20, 300));
        let (x0, y0) = (
            rng.range(0, width.saturating_sub(w).max(1)),
            rng.range(0, height.saturating_sub(h).max(1)),
        );
        let c = [
            rng.range(30, 200) as u8,
            rng.range(30, 200) as u8,
            rng.range(30, 200) as u8,
        ];
        let stripes = rng.range(0, 3) == 0;
        for y in y0..(y0 + h).min(height) {
            for x in x0..(x0 + w).min(width) {
                let d = if stripes && (x / 6) % 2 == 0 { 25 } else { 0 };
                img.put_pixel(x, y, Rgb(c.map(|v| v.saturating_sub(d))));
            }
        }
    }
    let mut boxes = Vec::new();
    let mut placed: Vec<[u32; 4]> = Vec::new();
    while boxes.len() < labels {
        let px = rng.range(px_lo, px_hi + 1) as f32;
        let text = phrase(&mut rng);
        let w = (px * 0.62 * text.len() as f32) as u32 + 24;
        let h = px as u32 + 16;
        let x0 = rng.range(8, width - w - 8);
        let y0 = rng.range(8, height - h - 8);
        let patch = [x0, y0, x0 + w, y0 + h];
        if placed.iter().any(|p| {
            p[0] < patch[2] + 40
                && patch[0] < p[2] + 40
                && p[1] < patch[3] + 40
                && patch[1] < p[3] + 40
        }) {
            continue;
        }
        let paper = [
            rng.range(225, 250) as u8,
            rng.range(225, 250) as u8,
            rng.range(215, 245) as u8,
        ];
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                img.put_pixel(x, y, Rgb(paper));
            }
        }
        let baseline = y0 as f32 + 8.0 + px * 0.8;
        if let Some(bbox) = draw_text(
            &mut img,
            &font,
            px,
            x0 as f32 + 12.0,
            baseline,
            &text,
            [15, 15, 25],
        ) {
            boxes.push(TextBox { text, bbox });
            placed.push(patch);
        }
    }
    (img, boxes)
}

/// A printed page: white, margins, lines of `px_lo..=px_hi` px text at
/// 1.6× line spacing, paragraph breaks, ragged right. Seeded like `render`.
pub fn render_page(
    width: u32,
    height: u32,
    seed: u64,
    px_lo: u32,
    px_hi: u32,
) -> (RgbImage, Vec<TextBox>) {
    let font = font();
    let mut rng = Rng::new(seed);
    let mut img = RgbImage::from_pixel(width, height, Rgb([250, 250, 247]));
    let margin = width / 12;
    let mut boxes = Vec::new();
    let mut y = margin as f32;
    while y < (height - margin) as f32 {
        let px = rng.range(px_lo, px_hi + 1) as f32;
        let words = rng.range(1, 4);
        let text: Vec<String> = (0..words).map(|_| phrase(&mut rng)).collect();
        let mut text = text.join(" ");
        // Ragged right: the line stops before the right margin.
        while px * 0.62 * text.len() as f32 > (width - 2 * margin) as f32 {
            text.truncate(text.len() * 3 / 4);
            text = text.trim_end().to_string();
        }
        let baseline = y + px * 0.8;
        if baseline + px * 0.3 > (height - margin) as f32 {
            break;
        }
        if let Some(bbox) = draw_text(
            &mut img,
            &font,
            px,
            margin as f32,
            baseline,
            &text,
            [20, 20, 20],
        ) {
            boxes.push(TextBox { text, bbox });
        }
        y += px * 1.6;
        if rng.range(0, 6) == 0 {
            y += px;
        }
    }
    (img, boxes)
}

/// Intersection over union of two axis-aligned boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let ix = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let iy = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = ix * iy;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// Fraction of ground-truth boxes matched by some detection with IoU ≥ `min_iou`.
pub fn recall(truth: &[TextBox], found: &[[f32; 4]], min_iou: f32) -> f32 {
    if truth.is_empty() {
        return 1.0;
    }
    let hit = truth
        .iter()
        .filter(|t| found.iter().any(|f| iou(t.bbox, *f) >= min_iou))
        .count();
    hit as f32 / truth.len() as f32
}

/// Fraction of detections that match some ground-truth box.
pub fn precision(truth: &[TextBox], found: &[[f32; 4]], min_iou: f32) -> f32 {
    if found.is_empty() {
        return 1.0;
    }
    let hit = found
        .iter()
        .filter(|f| truth.iter().any(|t| iou(t.bbox, **f) >= min_iou))
        .count();
    hit as f32 / found.len() as f32
}

/// Boxes from a detections message (`detections[].box`).
pub fn boxes_of(message: &serde_json::Value) -> Vec<[f32; 4]> {
    message["detections"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    let b = &d["box"];
                    [0, 1, 2, 3].map(|i| b[i].as_f64().expect("box values are numbers") as f32)
                })
                .collect()
        })
        .unwrap_or_default()
}
