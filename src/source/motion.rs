//! Motion gating for streams (`motion = true`): Frigate's recipe on a
//! small grey copy of each frame — block-average down (which blurs), a
//! further 3×3 blur, compare with a running average, threshold — so
//! inference is skipped while nothing in the picture changes. A full pass
//! still runs every `motion_refresh_s`, so a still object is seen again.

use std::time::{Duration, Instant};

use geo::{Contains, LineString, Point, Polygon};
use image::RgbImage;

use crate::infer::grey::{self, SmallGrey, CHANGE_THRESHOLD};

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
    grey: SmallGrey,
    average: Vec<f32>,
    masked: Vec<bool>,
    last_inferred: Option<Instant>,
}

impl MotionGate {
    /// A gate with no picture yet: the first frame is motion.
    pub fn new(settings: MotionSettings) -> MotionGate {
        MotionGate {
            settings,
            grey: SmallGrey::default(),
            average: Vec::new(),
            masked: Vec::new(),
            last_inferred: None,
        }
    }

    /// Bytes it holds for frames of `width`×`height`.
    pub fn planned_bytes(width: u32, height: u32) -> u64 {
        let (sw, sh) = grey::small_size(width, height);
        grey::planned_bytes(width, height) + sw as u64 * sh as u64 * (4 + 1)
    }

    /// The mask, cell by cell of the small copy.
    fn mask_cells(&self) -> Vec<bool> {
        let ((w, h), (sw, sh)) = (self.grey.frame, self.grey.size);
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
        (0..sw * sh)
            .map(|i| {
                let (x, y) = ((i % sw) as f32, (i / sw) as f32);
                let p = Point::new((x + 0.5) * kx, (y + 0.5) * ky);
                polys.iter().any(|m| m.contains(&p))
            })
            .collect()
    }

    /// Changed pixels of the small copy since the running average; updates it.
    pub fn changed(&mut self, img: &RgbImage) -> usize {
        let before = self.grey.frame;
        self.grey.update(img);
        if self.grey.frame != before || self.masked.len() != self.grey.pixels.len() {
            self.masked = self.mask_cells();
            self.average.clear();
        }
        if self.average.is_empty() {
            self.average = self.grey.pixels.clone();
            return usize::MAX;
        }
        let mut changed = 0;
        for (i, (&cur, avg)) in self.grey.pixels.iter().zip(&mut self.average).enumerate() {
            if !self.masked[i] && (cur - *avg).abs() > CHANGE_THRESHOLD {
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
        crate::infer::grey::checker_scene(1280, 720, square_at)
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
