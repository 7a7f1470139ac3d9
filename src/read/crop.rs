//! Crops cut from the frame already in memory: a text quad is rectified
//! (as PP-OCR's `get_rotate_crop_image`) straight into the recognizer's
//! height, so a crop costs one pass over its own pixels and the frame is
//! never copied or decoded again.

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::Projection;

/// The recognizer's input height (PP-OCRv3/v4/v5 read 48-pixel lines).
pub const LINE_HEIGHT: u32 = 48;

/// A crop ready for the recognizer: `LINE_HEIGHT` rows, `width` columns.
pub struct Crop {
    /// The rectified pixels.
    pub image: RgbImage,
    /// Width over height of the quad it came from (after turning a tall
    /// one upright), what batching sorts by.
    pub ratio: f32,
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The quad's corners clockwise from its reading start, and its reading
/// width and height: a quad 1.5 times taller than wide is a vertical line,
/// turned as PP-OCR turns it (90° counter-clockwise).
fn upright(quad: [[f32; 2]; 4]) -> ([[f32; 2]; 4], f32, f32) {
    let w = dist(quad[0], quad[1]).max(dist(quad[2], quad[3]));
    let h = dist(quad[0], quad[3]).max(dist(quad[1], quad[2]));
    if h >= 1.5 * w {
        ([quad[1], quad[2], quad[3], quad[0]], h, w)
    } else {
        (quad, w, h)
    }
}

/// Rectifies `quad` (clockwise from top-left, in `image`'s pixels) into a
/// `LINE_HEIGHT`-high crop at most `max_width` wide, sampling bilinearly
/// with the border repeated. `None` for a degenerate quad.
pub fn rectify(image: &RgbImage, quad: [[f32; 2]; 4], max_width: u32) -> Option<Crop> {
    let (q, w, h) = upright(quad);
    if !(w >= 1.0 && h >= 1.0) {
        return None;
    }
    let ratio = w / h;
    let out_w = ((LINE_HEIGHT as f32 * ratio).ceil() as u32).clamp(1, max_width.max(1));
    let out_h = LINE_HEIGHT as f32;
    let (ow, oh) = (out_w as f32, out_h);
    // Pixel centres map to pixel centres: target corner (0,0) is the
    // quad's first corner.
    let to_source = Projection::from_control_points(
        [(0.0, 0.0), (ow, 0.0), (ow, oh), (0.0, oh)],
        [
            (q[0][0], q[0][1]),
            (q[1][0], q[1][1]),
            (q[2][0], q[2][1]),
            (q[3][0], q[3][1]),
        ],
    )?;
    let mut out = RgbImage::new(out_w, LINE_HEIGHT);
    for y in 0..LINE_HEIGHT {
        for x in 0..out_w {
            let (sx, sy) = to_source * (x as f32 + 0.5, y as f32 + 0.5);
            out.put_pixel(x, y, bilinear(image, sx - 0.5, sy - 0.5));
        }
    }
    Some(Crop { image: out, ratio })
}

/// The colour at (x, y), edges repeated beyond the frame.
fn bilinear(image: &RgbImage, x: f32, y: f32) -> Rgb<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let x = if x.is_finite() { x } else { 0.0 };
    let y = if y.is_finite() { y } else { 0.0 };
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let at = |xi: i64, yi: i64| {
        image
            .get_pixel(xi.clamp(0, w - 1) as u32, yi.clamp(0, h - 1) as u32)
            .0
    };
    let (x0, y0) = (x0 as i64, y0 as i64);
    let (a, b, c, d) = (
        at(x0, y0),
        at(x0 + 1, y0),
        at(x0, y0 + 1),
        at(x0 + 1, y0 + 1),
    );
    let mut px = [0u8; 3];
    for i in 0..3 {
        let top = a[i] as f32 * (1.0 - fx) + b[i] as f32 * fx;
        let bottom = c[i] as f32 * (1.0 - fx) + d[i] as f32 * fx;
        px[i] = (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8;
    }
    Rgb(px)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_quad_becomes_its_own_pixels_at_line_height() {
        // A 192x48 region with a vertical stripe pattern, inside a bigger frame.
        let mut frame = RgbImage::from_pixel(400, 200, Rgb([0, 0, 0]));
        for y in 50..98 {
            for x in 100..292 {
                let v = if (x - 100) / 16 % 2 == 0 { 250 } else { 10 };
                frame.put_pixel(x, y, Rgb([v, v, v]));
            }
        }
        let quad = [[100.0, 50.0], [292.0, 50.0], [292.0, 98.0], [100.0, 98.0]];
        let crop = rectify(&frame, quad, 2000).unwrap();
        assert_eq!(crop.image.dimensions(), (192, 48));
        assert!((crop.ratio - 4.0).abs() < 1e-4);
        for x in [4u32, 20, 40, 180] {
            let want = frame.get_pixel(100 + x, 70);
            assert_eq!(crop.image.get_pixel(x, 20), want, "column {x}");
        }
    }

    #[test]
    fn a_rotated_quad_is_read_level_and_a_tall_one_is_turned() {
        // A bright bar along a 30° line: rectified, the bar fills the crop's middle rows.
        let mut frame = RgbImage::from_pixel(300, 300, Rgb([0, 0, 0]));
        let (c, s) = (30f32.to_radians().cos(), 30f32.to_radians().sin());
        let p = |u: f32, v: f32| [60.0 + u * c - v * s, 60.0 + u * s + v * c];
        for y in 0..300 {
            for x in 0..300 {
                // back to (u, v) along and across the line
                let (dx, dy) = (x as f32 - 60.0, y as f32 - 60.0);
                let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
                if (0.0..200.0).contains(&u) && (15.0..35.0).contains(&v) {
                    frame.put_pixel(x, y, Rgb([255, 255, 255]));
                }
            }
        }
        let quad = [p(0.0, 0.0), p(200.0, 0.0), p(200.0, 50.0), p(0.0, 50.0)];
        let crop = rectify(&frame, quad, 2000).unwrap();
        assert_eq!(crop.image.height(), LINE_HEIGHT);
        assert_eq!(crop.image.width(), 192);
        assert!(
            crop.image.get_pixel(96, 24)[0] > 200,
            "the bar is in the middle"
        );
        assert!(crop.image.get_pixel(96, 3)[0] < 50, "above it is dark");
        // The same region as a tall quad (its sides given from a vertical reading).
        let tall = [[10.0, 10.0], [30.0, 10.0], [30.0, 110.0], [10.0, 110.0]];
        let turned = rectify(&frame, tall, 2000).unwrap();
        assert!((turned.ratio - 5.0).abs() < 1e-4, "{}", turned.ratio);
        assert_eq!(turned.image.width(), 240);
        assert!(rectify(&frame, [[5.0, 5.0]; 4], 2000).is_none());
    }
}
