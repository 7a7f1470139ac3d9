//! Motion gating for streams (`motion = true`): Frigate's recipe on a
//! small grey copy of each frame — block-average down (which blurs), a
//! further 3×3 blur, compare with a running average, threshold — so
//! inference is skipped while nothing in the picture changes. A full pass
//! still runs every `motion_refresh_s`, so a still object is seen again.

use std::time::{Duration, Instant};

use geo::{Contains, LineString, Point, Polygon};
use image::RgbImage;

/// Width of the grey copy; its height follows the frame's aspect.
const SMALL_WIDTH: u32 = 320;
/// A grey level change larger than this is motion.
const THRESHOLD: f32 = 20.0;
/// Changed pixels (of the small copy) that make motion.
const MIN_CHANGED: usize = 3;
/// How fast the running average follows the picture: a newly parked
/// object stops counting as motion after a few frames.
const ALPHA: f32 = 0.25;

/// `motion_refresh_s` when unset.
pub fn default_refresh_s() -> f64 {
    10.0
}

/// How a stream's motion gate runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionSettings {
    /// A frame is inferred at least this often, motion or not.
    pub refresh: Duration,
    /// Areas whose motion does not count (frame pixels).
    pub mask: Vec<Vec<[f32; 2]>>,
}

/// What the gate says about a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Something moved: infer.
    Motion,
    /// Nothing moved, but the refresh is due: infer.
    Refresh,
    /// Nothing moved: skip.
    Still,
}

/// One stream's motion state.
pub struct MotionGate {
    settings: MotionSettings,
    /// Size of the frames the state is for.
    frame: (u32, u32),
    small: (u32, u32),
    average: Vec<f32>,
    grey: Vec<f32>,
    blurred: Vec<f32>,
    masked: Vec<bool>,
    last_inferred: Option<Instant>,
}

impl MotionGate {
    /// A gate with no picture yet: the first frame is motion.
    pub fn new(settings: MotionSettings) -> MotionGate {
        MotionGate {
            settings,
            frame: (0, 0),
            small: (0, 0),
            average: Vec::new(),
            grey: Vec::new(),
            blurred: Vec::new(),
            masked: Vec::new(),
            last_inferred: None,
        }
    }

    /// Bytes it holds for frames of `width`×`height`.
    pub fn planned_bytes(width: u32, height: u32) -> u64 {
        let h = (SMALL_WIDTH as u64 * height as u64).div_ceil(width.max(1) as u64);
        SMALL_WIDTH as u64 * h * (4 * 3 + 1)
    }

    fn resize_state(&mut self, w: u32, h: u32) {
        let sw = SMALL_WIDTH.min(w).max(1);
        let sh = ((sw as u64 * h as u64) / w.max(1) as u64).max(1) as u32;
        let n = (sw * sh) as usize;
        self.frame = (w, h);
        self.small = (sw, sh);
        self.average.clear();
        self.grey = vec![0.0; n];
        self.blurred = vec![0.0; n];
        let polys: Vec<Polygon<f32>> = self
            .settings
            .mask
            .iter()
            .map(|m| {
                Polygon::new(
                    LineString::from(m.iter().map(|p| (p[0], p[1])).collect::<Vec<_>>()),
                    Vec::new(),
                )
            })
            .collect();
        let (kx, ky) = (w as f32 / sw as f32, h as f32 / sh as f32);
        self.masked = (0..n)
            .map(|i| {
                let (x, y) = ((i as u32 % sw) as f32, (i as u32 / sw) as f32);
                let p = Point::new((x + 0.5) * kx, (y + 0.5) * ky);
                polys.iter().any(|m| m.contains(&p))
            })
            .collect();
    }

    /// Changed pixels of the small copy since the running average; updates it.
    pub fn changed(&mut self, img: &RgbImage) -> usize {
        let (w, h) = img.dimensions();
        if (w, h) != self.frame {
            self.resize_state(w, h);
        }
        let (sw, sh) = self.small;
        // Block average, sampling every other pixel of each block: the
        // frame's full resolution is not needed to see motion.
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
                self.grey[(sy * sw + sx) as usize] = sum as f32 / count.max(1) as f32;
            }
        }
        let (sw, sh) = (sw as usize, sh as usize);
        for y in 0..sh {
            for x in 0..sw {
                let (mut s, mut n) = (0.0, 0.0);
                for yy in y.saturating_sub(1)..(y + 2).min(sh) {
                    for xx in x.saturating_sub(1)..(x + 2).min(sw) {
                        s += self.grey[yy * sw + xx];
                        n += 1.0;
                    }
                }
                self.blurred[y * sw + x] = s / n;
            }
        }
        if self.average.is_empty() {
            self.average = self.blurred.clone();
            return usize::MAX;
        }
        let mut changed = 0;
        for i in 0..self.blurred.len() {
            let (cur, avg) = (self.blurred[i], &mut self.average[i]);
            if !self.masked[i] && (cur - *avg).abs() > THRESHOLD {
                changed += 1;
            }
            *avg += ALPHA * (cur - *avg);
        }
        changed
    }

    /// Whether to infer `img`, taken at `now`.
    pub fn check(&mut self, img: &RgbImage, now: Instant) -> Verdict {
        let verdict = if self.changed(img) >= MIN_CHANGED {
            Verdict::Motion
        } else if self
            .last_inferred
            .is_none_or(|t| now.duration_since(t) >= self.settings.refresh)
        {
            Verdict::Refresh
        } else {
            Verdict::Still
        };
        if verdict != Verdict::Still {
            self.last_inferred = Some(now);
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene(square_at: Option<(u32, u32)>) -> RgbImage {
        let mut img = RgbImage::from_fn(1280, 720, |x, y| {
            let v = ((x / 40 + y / 40) % 2 * 60 + 60) as u8;
            image::Rgb([v, v, v])
        });
        if let Some((sx, sy)) = square_at {
            for y in sy..sy + 24 {
                for x in sx..sx + 24 {
                    img.put_pixel(x, y, image::Rgb([250, 250, 250]));
                }
            }
        }
        img
    }

    #[test]
    fn a_still_scene_is_skipped_until_the_refresh_and_a_moving_square_is_not() {
        let mut gate = MotionGate::new(MotionSettings {
            refresh: Duration::from_secs(10),
            mask: vec![vec![
                [1000.0, 0.0],
                [1280.0, 0.0],
                [1280.0, 720.0],
                [1000.0, 720.0],
            ]],
        });
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_millis(200 * s);
        assert_eq!(
            gate.check(&scene(None), at(0)),
            Verdict::Motion,
            "the first frame"
        );
        for i in 1..20 {
            assert_eq!(gate.check(&scene(None), at(i)), Verdict::Still, "frame {i}");
        }
        assert_eq!(gate.check(&scene(None), at(50)), Verdict::Refresh);
        // A 24 px square (under 2% of the width) moving 30 px a frame.
        for i in 0..5 {
            assert_eq!(
                gate.check(&scene(Some((100 + 30 * i, 300))), at(51 + i as u64)),
                Verdict::Motion
            );
        }
        // It parks: a few frames later it is part of the background.
        let mut verdicts = Vec::new();
        for i in 0..15 {
            verdicts.push(gate.check(&scene(Some((220, 300))), at(60 + i)));
        }
        assert_eq!(verdicts.last(), Some(&Verdict::Still), "{verdicts:?}");
        // Motion inside the mask does not count.
        let mut g2 = MotionGate::new(gate.settings.clone());
        g2.check(&scene(None), at(0));
        for i in 0..5 {
            assert_eq!(
                g2.check(&scene(Some((1100 + 20 * i, 300))), at(1 + i as u64)),
                Verdict::Still
            );
        }
    }
}
