//! A small, blurred grey copy of a frame: what motion gating and tile reuse
//! compare from one frame to the next. Frigate's recipe: block-average down
//! (which blurs), then a 3×3 blur, so sensor noise and compression ripple
//! do not count as change.

use image::RgbImage;

/// Width of the copy; its height follows the frame's aspect.
pub const SMALL_WIDTH: u32 = 320;

/// A grey level change larger than this (0–255) is a change.
pub const CHANGE_THRESHOLD: f32 = 20.0;

/// The copy's size for a `w`×`h` frame.
pub fn small_size(w: u32, h: u32) -> (u32, u32) {
    let sw = SMALL_WIDTH.min(w).max(1);
    let sh = ((sw as u64 * h as u64) / w.max(1) as u64).max(1) as u32;
    (sw, sh)
}

/// Bytes a `SmallGrey` holds for a `w`×`h` frame.
pub fn planned_bytes(w: u32, h: u32) -> u64 {
    let (sw, sh) = small_size(w, h);
    sw as u64 * sh as u64 * 4 * 2
}

/// The small copy, recomputed in place for each frame.
#[derive(Debug, Default, Clone)]
pub struct SmallGrey {
    /// Frame size the copy was made from.
    pub frame: (u32, u32),
    /// The copy's size.
    pub size: (u32, u32),
    /// Blurred grey levels, row-major.
    pub pixels: Vec<f32>,
    raw: Vec<f32>,
}

impl SmallGrey {
    /// Makes the copy of `img`.
    pub fn update(&mut self, img: &RgbImage) {
        let (w, h) = img.dimensions();
        if (w, h) != self.frame {
            self.frame = (w, h);
            self.size = small_size(w, h);
            let n = (self.size.0 * self.size.1) as usize;
            self.raw = vec![0.0; n];
            self.pixels = vec![0.0; n];
        }
        let (sw, sh) = self.size;
        // Block average, sampling every other pixel of each block: the
        // frame's full resolution is not needed to see change.
        let raw = img.as_raw();
        for sy in 0..sh {
            let (y0, y1) = (sy * h / sh, ((sy + 1) * h / sh).max(sy * h / sh + 1));
            for sx in 0..sw {
                let (x0, x1) = (sx * w / sw, ((sx + 1) * w / sw).max(sx * w / sw + 1));
                let (mut sum, mut count) = (0u32, 0u32);
                for y in (y0..y1).step_by(2) {
                    let row = y as usize * w as usize * 3;
                    for x in (x0..x1).step_by(2) {
                        let p = row + x as usize * 3;
                        // Integer luma: (77 R + 150 G + 29 B) / 256.
                        sum +=
                            (77 * raw[p] as u32 + 150 * raw[p + 1] as u32 + 29 * raw[p + 2] as u32)
                                >> 8;
                        count += 1;
                    }
                }
                self.raw[(sy * sw + sx) as usize] = sum as f32 / count.max(1) as f32;
            }
        }
        let (sw, sh) = (sw as usize, sh as usize);
        for y in 0..sh {
            for x in 0..sw {
                let (mut s, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(1)..(y + 2).min(sh) {
                    for xx in x.saturating_sub(1)..(x + 2).min(sw) {
                        s += self.raw[yy * sw + xx];
                        n += 1.0;
                    }
                }
                self.pixels[y * sw + x] = s / n;
            }
        }
    }

    /// The copy's cells covering frame rectangle `[x0, y0, x1, y1]`, as
    /// half-open `(x0, y0, x1, y1)` cell bounds, grown by one cell (the blur
    /// spreads a change that far).
    pub fn cells(&self, rect: [f64; 4]) -> (usize, usize, usize, usize) {
        let (w, h) = (self.frame.0.max(1) as f64, self.frame.1.max(1) as f64);
        let (sw, sh) = (self.size.0 as f64, self.size.1 as f64);
        let x0 = ((rect[0] / w * sw).floor() - 1.0).max(0.0) as usize;
        let y0 = ((rect[1] / h * sh).floor() - 1.0).max(0.0) as usize;
        let x1 = ((rect[2] / w * sw).ceil() + 1.0).min(sw) as usize;
        let y1 = ((rect[3] / h * sh).ceil() + 1.0).min(sh) as usize;
        (x0, y0, x1.max(x0), y1.max(y0))
    }
}

/// A test picture: a 40 px checkerboard, with a white 24 px square at
/// `square` if given (what motion gating and tile reuse must notice).
#[cfg(test)]
pub(crate) fn checker_scene(w: u32, h: u32, square: Option<(u32, u32)>) -> RgbImage {
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let v = ((x / 40 + y / 40) % 2 * 60 + 60) as u8;
        image::Rgb([v, v, v])
    });
    if let Some((sx, sy)) = square {
        for y in sy..sy + 24 {
            for x in sx..sx + 24 {
                img.put_pixel(x, y, image::Rgb([250, 250, 250]));
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_320_wide_and_flat_where_the_frame_is() {
        let img = RgbImage::from_pixel(1280, 720, image::Rgb([100, 100, 100]));
        let mut g = SmallGrey::default();
        g.update(&img);
        assert_eq!(g.size, (320, 180));
        assert!(
            g.pixels.iter().all(|v| (v - 99.6).abs() < 1.0),
            "{}",
            g.pixels[0]
        );
        assert_eq!(g.cells([0.0, 0.0, 1280.0, 720.0]), (0, 0, 320, 180));
        assert_eq!(g.cells([400.0, 400.0, 800.0, 480.0]), (99, 99, 201, 121));
    }
}
