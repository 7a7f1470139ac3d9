//! Pre-processing: file bytes → oriented RGB8 pixels → model-sized NCHW floats.

use std::io::BufReader;
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ImageDecoder, ImageReader, RgbImage};

use super::TensorBatch;

/// Why an image could not be turned into pixels.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The file could not be read.
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    /// Zero bytes.
    #[error("the file is empty (0 bytes)")]
    Empty,
    /// Not a format we decode.
    #[error("not a supported image (JPEG, PNG, BMP, TIFF or WebP expected)")]
    UnknownFormat,
    /// Too large for the memory limit.
    #[error("image is too large to decode within the memory limit: {0}")]
    TooLarge(String),
    /// Corrupt or truncated data.
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

impl From<image::ImageError> for DecodeError {
    fn from(e: image::ImageError) -> Self {
        match e {
            // The decoder reading past the end means the data is cut short.
            image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                DecodeError::Corrupt("the data ends early (truncated file?)".into())
            }
            image::ImageError::IoError(e) => DecodeError::Io(e),
            image::ImageError::Unsupported(_) => DecodeError::UnknownFormat,
            image::ImageError::Limits(l) => DecodeError::TooLarge(l.to_string()),
            other => DecodeError::Corrupt(other.to_string()),
        }
    }
}

/// Decodes an image file into RGB8 with its EXIF orientation applied.
/// Grey, grey+alpha, RGBA and 16-bit inputs are converted to RGB8.
/// `max_alloc` bounds what the decoder may allocate, so a decompression bomb
/// is refused instead of exhausting memory.
pub fn decode_file(path: &Path, max_alloc: u64) -> Result<RgbImage, DecodeError> {
    let file = std::fs::File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    if reader.format().is_none() {
        return Err(DecodeError::UnknownFormat);
    }
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    // The decoder's own buffer plus the RGB8 copy; checked before a single
    // pixel is decoded, so a small file that expands hugely is refused.
    let (w, h) = decoder.dimensions();
    let needed = decoder
        .total_bytes()
        .saturating_add(w as u64 * h as u64 * 3);
    if needed > max_alloc {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} needs {} MiB to decode, the limit is {} MiB",
            needed >> 20,
            max_alloc >> 20
        )));
    }
    // A broken EXIF block should not cost the operator the frame.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    Ok(match img {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    })
}

/// Size fed to the model in whole-frame mode: the longest side capped at
/// `max_side`, each side rounded to a multiple of 32 (at least 32), as
/// PaddleOCR's `DetResizeForTest` with `limit_type = "max"` does.
pub fn whole_frame_size(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height) as f64;
    let ratio = if longest > max_side as f64 {
        max_side as f64 / longest
    } else {
        1.0
    };
    let round32 = |v: u32| {
        let scaled = (v as f64 * ratio).floor();
        (((scaled / 32.0).round() as u32) * 32).max(32)
    };
    (round32(width), round32(height))
}

/// Per-worker pre-processing state: the resizer and its buffers are reused
/// from frame to frame.
pub struct Preprocessor {
    resizer: Resizer,
    options: ResizeOptions,
    resized: Vec<u8>,
    lut: [f32; 256],
}

impl Default for Preprocessor {
    fn default() -> Self {
        Self::new()
    }
}

impl Preprocessor {
    /// A preprocessor with the DB normalisation `(v/255 - 0.5) / 0.5`.
    pub fn new() -> Self {
        let mut lut = [0f32; 256];
        for (v, slot) in lut.iter_mut().enumerate() {
            *slot = (v as f32 / 255.0 - 0.5) / 0.5;
        }
        Preprocessor {
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
            resized: Vec::new(),
            lut,
        }
    }

    /// Resizes `img` to `width`×`height` and writes a `[1, 3, h, w]` tensor in
    /// BGR plane order (PP-OCR models were trained on OpenCV's BGR frames).
    pub fn to_tensor(&mut self, img: &RgbImage, width: u32, height: u32) -> TensorBatch {
        let pixels: &[u8] = if (img.width(), img.height()) == (width, height) {
            img.as_raw()
        } else {
            self.resized.resize(width as usize * height as usize * 3, 0);
            let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
                .expect("RgbImage buffers always match their dimensions");
            let mut dst = Image::from_slice_u8(width, height, &mut self.resized, PixelType::U8x3)
                .expect("buffer was sized for the destination");
            self.resizer
                .resize(&src, &mut dst, &self.options)
                .expect("source and destination are both U8x3");
            &self.resized
        };
        let plane = width as usize * height as usize;
        let mut data = vec![0f32; plane * 3];
        let (b, rest) = data.split_at_mut(plane);
        let (g, r) = rest.split_at_mut(plane);
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            r[i] = self.lut[px[0] as usize];
            g[i] = self.lut[px[1] as usize];
            b[i] = self.lut[px[2] as usize];
        }
        TensorBatch {
            shape: [1, 3, height as usize, width as usize],
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frame_size_matches_paddle_rules() {
        assert_eq!(whole_frame_size(1920, 1080, 960), (960, 544));
        assert_eq!(whole_frame_size(100, 50, 960), (96, 64));
        assert_eq!(whole_frame_size(10, 10, 960), (32, 32));
        assert_eq!(whole_frame_size(1080, 1920, 960), (544, 960));
        assert_eq!(whole_frame_size(3840, 2160, 960), (960, 544));
    }

    #[test]
    fn tensor_is_planar_bgr_and_normalised() {
        let mut img = RgbImage::new(32, 32);
        img.put_pixel(1, 0, image::Rgb([255, 0, 127]));
        let t = Preprocessor::new().to_tensor(&img, 32, 32);
        assert_eq!(t.shape, [1, 3, 32, 32]);
        let plane = 32 * 32;
        // B plane first: pixel (1,0) has B = 127.
        assert!((t.data[1] - (127.0 / 255.0 - 0.5) / 0.5).abs() < 1e-6);
        assert!((t.data[plane + 1] + 1.0).abs() < 1e-6); // G = 0 → -1
        assert!((t.data[2 * plane + 1] - 1.0).abs() < 1e-6); // R = 255 → 1
        assert!((t.data[0] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn resize_keeps_a_uniform_colour() {
        let img = RgbImage::from_pixel(100, 60, image::Rgb([200, 100, 50]));
        let t = Preprocessor::new().to_tensor(&img, 64, 32);
        assert_eq!(t.shape, [1, 3, 32, 64]);
        let expect_b = (50.0 / 255.0 - 0.5) / 0.5;
        assert!(t.data[..64 * 32]
            .iter()
            .all(|v| (v - expect_b).abs() < 1e-3));
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.jpg", b"");
        assert!(matches!(
            decode_file(&empty, 1 << 30).err(),
            Some(DecodeError::Empty)
        ));
        let text = write(dir.path(), "notes.jpg", b"this is not an image at all");
        assert!(matches!(
            decode_file(&text, 1 << 30).err(),
            Some(DecodeError::UnknownFormat)
        ));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(RgbImage::new(64, 64))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let truncated = write(dir.path(), "cut.png", &png[..png.len() / 2]);
        let Err(err) = decode_file(&truncated, 1 << 30) else {
            panic!("truncated PNG was accepted")
        };
        assert!(
            matches!(err, DecodeError::Corrupt(_) | DecodeError::Io(_)),
            "{err:?}"
        );
        let missing = dir.path().join("gone.png");
        assert!(matches!(
            decode_file(&missing, 1 << 30).err(),
            Some(DecodeError::Io(_))
        ));
    }

    #[test]
    fn grey_rgba_and_16_bit_inputs_become_rgb8() {
        let dir = tempfile::tempdir().unwrap();
        let grey =
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(8, 4, image::Luma([77])));
        let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            8,
            4,
            image::Rgba([1, 2, 3, 4]),
        ));
        let deep = image::DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            8,
            4,
            image::Rgb([65535u16, 0, 32896]),
        ));
        for (name, img, want) in [
            ("g.png", grey, [77, 77, 77]),
            ("a.png", rgba, [1, 2, 3]),
            ("d.png", deep, [255, 0, 128]),
        ] {
            let p = dir.path().join(name);
            img.save(&p).unwrap();
            let rgb = decode_file(&p, 1 << 30).unwrap();
            assert_eq!((rgb.width(), rgb.height()), (8, 4), "{name}");
            assert_eq!(rgb.get_pixel(3, 2).0, want, "{name}");
        }
    }

    /// A JPEG with an APP1 Exif block holding only the orientation tag.
    fn jpeg_with_orientation(img: &RgbImage, orientation: u8) -> Vec<u8> {
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(img)
            .unwrap();
        // Big-endian TIFF header, one IFD entry: 0x0112 SHORT 1 = orientation.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0".to_vec();
        exif.extend_from_slice(&[orientation, 0, 0, 0, 0, 0, 0]);
        let len = (exif.len() + 2) as u16;
        let mut out = jpeg[..2].to_vec(); // SOI
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&exif);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn exif_orientation_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        // 40×20, left half black, right half white.
        let img = RgbImage::from_fn(40, 20, |x, _| {
            if x < 20 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255; 3])
            }
        });
        let plain = dir.path().join("plain.jpg");
        std::fs::write(&plain, jpeg_with_orientation(&img, 1)).unwrap();
        let upright = decode_file(&plain, 1 << 30).unwrap();
        assert_eq!((upright.width(), upright.height()), (40, 20));
        let rotated = dir.path().join("rot90.jpg");
        std::fs::write(&rotated, jpeg_with_orientation(&img, 6)).unwrap();
        let r = decode_file(&rotated, 1 << 30).unwrap();
        // Orientation 6: rotate 90° clockwise; the black left half ends on top.
        assert_eq!((r.width(), r.height()), (20, 40));
        assert!(r.get_pixel(10, 5).0[0] < 40, "top is black");
        assert!(r.get_pixel(10, 35).0[0] > 215, "bottom is white");
    }

    #[test]
    fn decompression_bomb_is_refused_by_the_alloc_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.png");
        image::GrayImage::new(4000, 4000).save(&p).unwrap();
        let Err(err) = decode_file(&p, 1 << 20) else {
            panic!("bomb was accepted")
        };
        assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
    }
}
