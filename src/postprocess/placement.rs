//! Where a region of the frame lands in a fixed-size model input, and the
//! way back: letterbox (YOLO: aspect kept, grey padding) and centre crop
//! (ImageNet classifiers).

/// A frame region resampled into a rectangle of the model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Frame region shown, `[left, top, width, height]` in frame pixels.
    pub src: [f64; 4],
    /// Where it lands in the input, `[x, y, width, height]` in input pixels;
    /// the rest of the input is padding.
    pub dst: [u32; 4],
    /// Input `(width, height)`.
    pub input: (u32, u32),
}

/// The grey YOLO models are trained to see as padding (Ultralytics' 114).
pub const LETTERBOX_FILL: u8 = 114;

impl Placement {
    /// Fits `src` into a `width`×`height` input with its aspect ratio kept and
    /// centred, as Ultralytics' `LetterBox(auto=False, center=True)` does.
    pub fn letterbox(src: [f64; 4], width: u32, height: u32) -> Placement {
        let r = (width as f64 / src[2]).min(height as f64 / src[3]);
        let new_w = ((src[2] * r).round() as u32).clamp(1, width);
        let new_h = ((src[3] * r).round() as u32).clamp(1, height);
        let dw = (width - new_w) as f64 / 2.0;
        let dh = (height - new_h) as f64 / 2.0;
        // Ultralytics rounds `d - 0.1` so an odd padding puts the extra pixel
        // at the bottom/right; matching it matches their boxes to the pixel.
        let left = (dw - 0.1).round().max(0.0) as u32;
        let top = (dh - 0.1).round().max(0.0) as u32;
        Placement {
            src,
            dst: [left, top, new_w, new_h],
            input: (width, height),
        }
    }

    /// The centre of a `frame_w`×`frame_h` frame, resized so the crop is
    /// `crop` of its short side, cut to `width`×`height` (torchvision's
    /// `Resize(224 / 0.875)` then `CenterCrop(224)`).
    pub fn center_crop(
        frame_w: u32,
        frame_h: u32,
        width: u32,
        height: u32,
        crop: f32,
    ) -> Placement {
        let (fw, fh) = (frame_w as f64, frame_h as f64);
        let scale = (width as f64 / fw).max(height as f64 / fh) / crop as f64;
        let (cw, ch) = (
            (width as f64 / scale).min(fw),
            (height as f64 / scale).min(fh),
        );
        Placement {
            src: [(fw - cw) / 2.0, (fh - ch) / 2.0, cw, ch],
            dst: [0, 0, width, height],
            input: (width, height),
        }
    }

    /// Frame coordinates of input point `(x, y)`, clamped to the region.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        let [left, top, w, h] = self.src;
        let sx = self.dst[2] as f64 / w;
        let sy = self.dst[3] as f64 / h;
        let fx = left + (x as f64 - self.dst[0] as f64) / sx;
        let fy = top + (y as f64 - self.dst[1] as f64) / sy;
        (
            fx.clamp(left, left + w) as f32,
            fy.clamp(top, top + h) as f32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_matches_ultralytics_for_1080p() {
        // 1920×1080 into 640×640: r = 1/3, 640×360, 140 px of grey above and below.
        let p = Placement::letterbox([0.0, 0.0, 1920.0, 1080.0], 640, 640);
        assert_eq!(p.dst, [0, 140, 640, 360]);
        assert_eq!(p.to_frame(0.0, 140.0), (0.0, 0.0));
        assert_eq!(p.to_frame(320.0, 320.0), (960.0, 540.0));
        assert_eq!(p.to_frame(640.0, 500.0), (1920.0, 1080.0));
        // Points in the padding clamp to the frame edge.
        assert_eq!(p.to_frame(10.0, 5.0), (30.0, 0.0));
    }

    #[test]
    fn letterbox_of_a_tile_maps_back_with_its_offset() {
        let p = Placement::letterbox([512.0, 256.0, 640.0, 640.0], 640, 640);
        assert_eq!(p.dst, [0, 0, 640, 640]);
        assert_eq!(p.to_frame(100.0, 50.0), (612.0, 306.0));
        // Odd padding: the extra pixel goes bottom/right, as in Ultralytics.
        let q = Placement::letterbox([0.0, 0.0, 640.0, 321.0], 640, 640);
        assert_eq!(q.dst, [0, 159, 640, 321]);
    }

    #[test]
    fn center_crop_is_torchvision_resize_then_crop() {
        // 640×480 → short side 256 (scale 0.5333) → crop 224 = 420 frame px.
        let p = Placement::center_crop(640, 480, 224, 224, 0.875);
        let [l, t, w, h] = p.src;
        assert!(
            (w - 420.0).abs() < 1e-9 && (h - 420.0).abs() < 1e-9,
            "{w} {h}"
        );
        assert!(
            (l - 110.0).abs() < 1e-9 && (t - 30.0).abs() < 1e-9,
            "{l} {t}"
        );
        assert_eq!(p.dst, [0, 0, 224, 224]);
        // crop = 1 takes the whole short side.
        let q = Placement::center_crop(300, 200, 224, 224, 1.0);
        assert!((q.src[3] - 200.0).abs() < 1e-9);
    }
}
