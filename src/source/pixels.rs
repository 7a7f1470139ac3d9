//! Camera pixel formats and their conversion into RGB8, in place: a frame is
//! converted into a buffer that already exists, so streaming allocates
//! nothing per frame.

use image::RgbImage;
use serde::{Deserialize, Serialize};
use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;

/// A V4L2 pixel format edgewatch can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Motion JPEG: one JPEG per frame, often without Huffman tables.
    Mjpeg,
    /// YUV 4:2:2 packed as Y0 U Y1 V.
    Yuyv,
    /// 8-bit luma only.
    Grey,
    /// RGB 8:8:8 packed.
    Rgb3,
}

impl PixelFormat {
    /// Every format, in the order `auto` prefers for large frames.
    pub const ALL: [PixelFormat; 4] = [
        PixelFormat::Mjpeg,
        PixelFormat::Yuyv,
        PixelFormat::Rgb3,
        PixelFormat::Grey,
    ];

    /// The V4L2 FourCC code.
    pub fn fourcc(self) -> [u8; 4] {
        match self {
            PixelFormat::Mjpeg => *b"MJPG",
            PixelFormat::Yuyv => *b"YUYV",
            PixelFormat::Grey => *b"GREY",
            PixelFormat::Rgb3 => *b"RGB3",
        }
    }

    /// The format with this FourCC (`JPEG` counts as MJPEG).
    pub fn from_fourcc(code: [u8; 4]) -> Option<PixelFormat> {
        match &code {
            b"MJPG" | b"JPEG" => Some(PixelFormat::Mjpeg),
            b"YUYV" => Some(PixelFormat::Yuyv),
            b"GREY" => Some(PixelFormat::Grey),
            b"RGB3" => Some(PixelFormat::Rgb3),
            _ => None,
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::Mjpeg => "mjpeg",
            PixelFormat::Yuyv => "yuyv",
            PixelFormat::Grey => "grey",
            PixelFormat::Rgb3 => "rgb3",
        }
    }

    /// Bytes a raw (uncompressed) frame of this size holds; `None` for MJPEG,
    /// whose frames vary.
    pub fn frame_bytes(self, width: u32, height: u32) -> Option<usize> {
        let px = width as usize * height as usize;
        match self {
            PixelFormat::Mjpeg => None,
            PixelFormat::Yuyv => Some(px * 2),
            PixelFormat::Grey => Some(px),
            PixelFormat::Rgb3 => Some(px * 3),
        }
    }
}

impl std::fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a camera frame could not be converted. The frame is dropped and
/// counted; the stream goes on.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A raw frame shorter than its format and size need (a torn buffer).
    #[error("{format} frame has {got} bytes, {want} expected for {width}x{height}; the frame is dropped")]
    Short {
        /// Format.
        format: PixelFormat,
        /// Bytes received.
        got: usize,
        /// Bytes needed.
        want: usize,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The MJPEG frame is not a decodable JPEG.
    #[error("MJPEG frame cannot be decoded: {0}; the frame is dropped")]
    Jpeg(String),
    /// The JPEG's size is not the size the camera granted.
    #[error(
        "MJPEG frame is {got_w}x{got_h}, the camera granted {width}x{height}; the frame is dropped"
    )]
    Size {
        /// Decoded width.
        got_w: u32,
        /// Decoded height.
        got_h: u32,
        /// Granted width.
        width: u32,
        /// Granted height.
        height: u32,
    },
}

/// Converts camera frames into RGB8, keeping the scratch space MJPEG needs
/// from frame to frame.
#[derive(Default)]
pub struct Converter {
    /// An MJPEG frame with its Huffman tables marker put back.
    patched: Vec<u8>,
}

impl Converter {
    /// A converter with no scratch space yet.
    pub fn new() -> Converter {
        Converter::default()
    }

    /// Converts `data`, a `width`×`height` frame in `format`, into `out`,
    /// which is resized (without reallocating when it already has the room).
    pub fn convert(
        &mut self,
        format: PixelFormat,
        width: u32,
        height: u32,
        data: &[u8],
        out: &mut RgbImage,
    ) -> Result<(), ConvertError> {
        if format == PixelFormat::Mjpeg {
            return self.mjpeg(width, height, data, out);
        }
        let want = format
            .frame_bytes(width, height)
            .expect("raw formats have a fixed size");
        if data.len() < want {
            return Err(ConvertError::Short {
                format,
                got: data.len(),
                want,
                width,
                height,
            });
        }
        let data = &data[..want];
        let mut buf = resize(out, width, height);
        match format {
            PixelFormat::Yuyv => yuyv_to_rgb(data, &mut buf),
            PixelFormat::Grey => grey_to_rgb(data, &mut buf),
            PixelFormat::Rgb3 => buf.copy_from_slice(data),
            PixelFormat::Mjpeg => unreachable!(),
        }
        *out = RgbImage::from_raw(width, height, buf).expect("buffer sized for the frame");
        Ok(())
    }

    fn mjpeg(
        &mut self,
        width: u32,
        height: u32,
        data: &[u8],
        out: &mut RgbImage,
    ) -> Result<(), ConvertError> {
        let jpeg = if missing_huffman_tables(data).is_some() {
            self.patched.clear();
            self.patched.extend_from_slice(&data[..2]);
            self.patched.extend_from_slice(&AVI1_APP0);
            self.patched.extend_from_slice(&data[2..]);
            &self.patched[..]
        } else {
            data
        };
        let options = DecoderOptions::default()
            .jpeg_set_out_colorspace(ColorSpace::RGB)
            .set_max_width(width as usize)
            .set_max_height(height as usize);
        let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(jpeg), options);
        decoder
            .decode_headers()
            .map_err(|e| ConvertError::Jpeg(e.to_string()))?;
        let (w, h) = decoder
            .dimensions()
            .ok_or_else(|| ConvertError::Jpeg("no frame header".into()))?;
        if (w as u32, h as u32) != (width, height) {
            return Err(ConvertError::Size {
                got_w: w as u32,
                got_h: h as u32,
                width,
                height,
            });
        }
        let mut buf = resize(out, width, height);
        let result = decoder.decode_into(&mut buf);
        // The buffer goes back into `out` even when decoding failed, so the
        // pooled allocation is kept.
        *out = RgbImage::from_raw(width, height, buf).expect("buffer sized for the frame");
        result.map_err(|e| ConvertError::Jpeg(e.to_string()))
    }
}

/// An APP0 "AVI1" segment. It marks a JPEG as AVI-style Motion JPEG, whose
/// Huffman tables are by definition the standard ones of ITU T.81 Annex K.3;
/// UVC cameras leave those tables out to save bandwidth, and the decoder
/// fills them in when it sees this marker.
const AVI1_APP0: [u8; 9] = [0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0];

/// A well-formed baseline JPEG without its Huffman table segments (DHT), as
/// UVC cameras send MJPEG: for tests and benches that play such a camera.
pub fn without_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    let mut i = 2;
    while i + 3 < jpeg.len() && jpeg[i + 1] != 0xDA {
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if jpeg[i + 1] != 0xC4 {
            out.extend_from_slice(&jpeg[i..(i + 2 + len).min(jpeg.len())]);
        }
        i += 2 + len;
    }
    out.extend_from_slice(&jpeg[i.min(jpeg.len())..]);
    out
}

/// When a JPEG reaches its scan (SOS) without defining Huffman tables (DHT)
/// or saying it is AVI MJPEG, the offset of the SOS marker; else `None`.
pub fn missing_huffman_tables(jpeg: &[u8]) -> Option<usize> {
    if jpeg.len() < 4 || jpeg[0] != 0xFF || jpeg[1] != 0xD8 {
        return None;
    }
    let mut i = 2;
    while i + 4 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        if marker == 0xFF {
            // Fill bytes before a marker.
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        match marker {
            0xC4 => return None,
            0xDA => return Some(i),
            0xE0 if jpeg.get(i + 4..i + 8) == Some(b"AVI1") => return None,
            _ => {}
        }
        i += 2 + len;
    }
    None
}

/// Takes `out`'s buffer, sized for `width`×`height` RGB8, keeping its
/// allocation.
fn resize(out: &mut RgbImage, width: u32, height: u32) -> Vec<u8> {
    let mut buf = std::mem::take(out).into_raw();
    buf.resize(width as usize * height as usize * 3, 0);
    buf
}

/// BT.601 limited range ("studio swing"), as cameras deliver it, in 8.8
/// fixed point: the integer form every V4L2 tool uses.
#[inline(always)]
fn yuv_pixel(y: u8, u: u8, v: u8, out: &mut [u8]) {
    let c = 298 * (y as i32 - 16);
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    out[0] = ((c + 409 * e + 128) >> 8).clamp(0, 255) as u8;
    out[1] = ((c - 100 * d - 208 * e + 128) >> 8).clamp(0, 255) as u8;
    out[2] = ((c + 516 * d + 128) >> 8).clamp(0, 255) as u8;
}

/// YUYV (Y0 U Y1 V, two pixels per 4 bytes) to RGB8, exact to the 8.8
/// fixed-point matrix. Scalar: 4.7 ms per 1080p frame on the x86 test VM
/// (`benches/pipeline.rs`), under 1 % of one frame's inference. The SIMD
/// `yuv` crate was tried and is off by 3 levels where this is within 2.
pub fn yuyv_to_rgb(yuyv: &[u8], rgb: &mut [u8]) {
    for (src, dst) in yuyv.chunks_exact(4).zip(rgb.chunks_exact_mut(6)) {
        let (u, v) = (src[1], src[3]);
        let (a, b) = dst.split_at_mut(3);
        yuv_pixel(src[0], u, v, a);
        yuv_pixel(src[2], u, v, b);
    }
}

/// GREY to RGB8.
pub fn grey_to_rgb(grey: &[u8], rgb: &mut [u8]) {
    for (g, dst) in grey.iter().zip(rgb.chunks_exact_mut(3)) {
        dst.fill(*g);
    }
}

/// RGB8 to YUYV with the BT.601 limited-range matrix, rounding; chroma is
/// the mean of each pixel pair. The inverse of `yuyv_to_rgb`, for recording
/// test streams and for tests.
pub fn rgb_to_yuyv(rgb: &RgbImage) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let mut out = Vec::with_capacity(w as usize * h as usize * 2);
    let yuv = |p: &[u8]| {
        let (r, g, b) = (p[0] as f32, p[1] as f32, p[2] as f32);
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        (y, u, v)
    };
    for row in rgb.as_raw().chunks_exact(w as usize * 3) {
        for pair in row.chunks(6) {
            let (y0, u0, v0) = yuv(&pair[..3]);
            let (y1, u1, v1) = if pair.len() == 6 {
                yuv(&pair[3..])
            } else {
                (y0, u0, v0)
            };
            let q = |x: f32| x.round().clamp(0.0, 255.0) as u8;
            out.extend_from_slice(&[q(y0), q((u0 + u1) / 2.0), q(y1), q((v0 + v1) / 2.0)]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::Rgb;

    /// A test card with colours changing every two pixels across, so YUYV's
    /// shared chroma loses nothing.
    fn card(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let k = x / 2;
            Rgb([
                (k * 37 % 256) as u8,
                (y * 23 % 256) as u8,
                ((k + y) * 11 % 256) as u8,
            ])
        })
    }

    fn max_diff(a: &RgbImage, b: &RgbImage) -> u8 {
        assert_eq!(a.dimensions(), b.dimensions());
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap()
    }

    #[test]
    fn yuyv_round_trip_within_two_levels() {
        let img = card(64, 48);
        let yuyv = rgb_to_yuyv(&img);
        let mut out = RgbImage::new(1, 1);
        Converter::new()
            .convert(PixelFormat::Yuyv, 64, 48, &yuyv, &mut out)
            .unwrap();
        assert!(
            max_diff(&img, &out) <= 2,
            "max diff {}",
            max_diff(&img, &out)
        );
    }

    #[test]
    fn yuyv_black_and_white_are_limited_range() {
        // Y=16 is black and Y=235 white in studio swing.
        let mut out = RgbImage::new(2, 1);
        let mut c = Converter::new();
        c.convert(PixelFormat::Yuyv, 2, 1, &[16, 128, 235, 128], &mut out)
            .unwrap();
        assert_eq!(out.as_raw(), &[0, 0, 0, 255, 255, 255]);
    }

    #[test]
    fn grey_and_rgb3_are_exact() {
        let img = card(10, 4);
        let grey: Vec<u8> = img.pixels().map(|p| p[1]).collect();
        let mut out = RgbImage::new(0, 0);
        let mut c = Converter::new();
        c.convert(PixelFormat::Grey, 10, 4, &grey, &mut out)
            .unwrap();
        assert!(out.pixels().zip(&grey).all(|(p, g)| p.0 == [*g; 3]));
        c.convert(PixelFormat::Rgb3, 10, 4, img.as_raw(), &mut out)
            .unwrap();
        assert_eq!(out, img);
    }

    #[test]
    fn short_raw_frame_is_an_error_naming_sizes() {
        let mut out = RgbImage::new(0, 0);
        let e = Converter::new()
            .convert(PixelFormat::Yuyv, 4, 4, &[0; 10], &mut out)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "yuyv frame has 10 bytes, 32 expected for 4x4; the frame is dropped"
        );
    }

    #[test]
    fn conversion_reuses_the_buffer() {
        let img = card(32, 16);
        let yuyv = rgb_to_yuyv(&img);
        let mut out = RgbImage::new(32, 16);
        let before = out.as_raw().as_ptr();
        Converter::new()
            .convert(PixelFormat::Yuyv, 32, 16, &yuyv, &mut out)
            .unwrap();
        assert_eq!(out.as_raw().as_ptr(), before);
    }

    fn jpeg(img: &RgbImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 95)
            .encode_image(img)
            .unwrap();
        bytes
    }

    #[test]
    fn mjpeg_decodes_close_to_the_source_image() {
        let img = card(64, 48);
        let mut out = RgbImage::new(0, 0);
        Converter::new()
            .convert(PixelFormat::Mjpeg, 64, 48, &jpeg(&img), &mut out)
            .unwrap();
        let reference = image::load_from_memory(&jpeg(&img)).unwrap().to_rgb8();
        assert!(max_diff(&reference, &out) <= 2);
        // Lossy, but close to the card on average.
        let mean: f64 = img
            .as_raw()
            .iter()
            .zip(out.as_raw())
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / img.as_raw().len() as f64;
        assert!(mean < 4.0, "mean diff {mean}");
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_as_with_them() {
        // The image crate's encoder writes the standard Annex K tables, which
        // are the ones AVI MJPEG implies.
        let img = card(64, 48);
        let full = jpeg(&img);
        let bare = without_huffman_tables(&full);
        assert!(bare.len() < full.len());
        assert!(missing_huffman_tables(&full).is_none());
        assert!(missing_huffman_tables(&bare).is_some());
        assert!(
            image::load_from_memory(&bare).is_err(),
            "a plain decoder fails on it"
        );
        let mut c = Converter::new();
        let (mut a, mut b) = (RgbImage::new(0, 0), RgbImage::new(0, 0));
        c.convert(PixelFormat::Mjpeg, 64, 48, &full, &mut a)
            .unwrap();
        c.convert(PixelFormat::Mjpeg, 64, 48, &bare, &mut b)
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn mjpeg_of_the_wrong_size_or_garbage_is_refused() {
        let img = card(64, 48);
        let mut out = RgbImage::new(0, 0);
        let mut c = Converter::new();
        let e = c
            .convert(PixelFormat::Mjpeg, 640, 480, &jpeg(&img), &mut out)
            .unwrap_err();
        assert!(e.to_string().contains("64x48"), "{e}");
        let e = c
            .convert(PixelFormat::Mjpeg, 64, 48, b"\xFF\xD8garbage", &mut out)
            .unwrap_err();
        assert!(matches!(e, ConvertError::Jpeg(_)), "{e}");
    }

    #[test]
    fn fourcc_round_trip() {
        for f in PixelFormat::ALL {
            assert_eq!(PixelFormat::from_fourcc(f.fourcc()), Some(f));
        }
        assert_eq!(PixelFormat::from_fourcc(*b"NV12"), None);
    }
}
