//! Pre-processing: file bytes → oriented RGB8 pixels → model-sized NCHW floats.

use std::io::BufReader;
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ImageDecoder, ImageReader, RgbImage};

pub use super::decoded::{DecodeError, Decoded};
use super::tiling::TilePlan;
use super::TensorBatch;
use crate::postprocess::placement::Placement;

/// Bytes per pixel the decode step may hold: the decoded frame plus one
/// rotated copy when EXIF says the camera was turned. `budget.rs` plans this.
pub const DECODE_BYTES_PER_PIXEL: u64 = 6;

/// Decodes an image file into RGB8 with its EXIF orientation applied.
/// Grey, grey+alpha, RGBA and 16-bit inputs are converted to RGB8.
///
/// `max_pixels` bounds memory: the header is read first, and a frame larger
/// than that is decoded already scaled down when it is a baseline JPEG (DCT
/// scaling by 1/2, 1/4 or 1/8), a PNG (row by row) or a TIFF (strip by
/// strip; both by the smallest whole factor that fits), and refused
/// otherwise, before a single pixel is decoded; a decompression bomb never
/// reaches memory.
pub fn decode_file(path: &Path, max_pixels: u64) -> Result<Decoded, DecodeError> {
    decode_file_checked(path, max_pixels, u64::MAX)
}

/// [`decode_file`], refusing a file that declares more than
/// `max_pixels_per_byte` pixels per byte of it (a decompression bomb), and
/// anything that is not a regular file (a FIFO would block the open).
pub fn decode_file_checked(
    path: &Path,
    max_pixels: u64,
    max_pixels_per_byte: u64,
) -> Result<Decoded, DecodeError> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(DecodeError::NotAFile);
    }
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len == 0 {
        return Err(DecodeError::Empty);
    }
    let mut reader = ImageReader::new(BufReader::new(file)).with_guessed_format()?;
    let Some(format) = reader.format() else {
        return Err(DecodeError::UnknownFormat);
    };
    let max_alloc = max_pixels.saturating_mul(DECODE_BYTES_PER_PIXEL);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut decoder = reader.into_decoder()?;
    let (w, h) = decoder.dimensions();
    let pixels = w as u64 * h as u64;
    if pixels / len > max_pixels_per_byte {
        return Err(DecodeError::Implausible(format!(
            "{len} bytes declare {w}x{h}: {} pixels per byte, more than max_pixels_per_byte ({max_pixels_per_byte}); a decompression bomb or a damaged header",
            pixels / len
        )));
    }
    if pixels > max_pixels {
        match format {
            image::ImageFormat::Jpeg => {
                drop(decoder);
                return decode_jpeg_scaled(path, max_pixels);
            }
            image::ImageFormat::Png => {
                drop(decoder);
                return super::scaled_decode::decode_png_scaled(path, max_pixels);
            }
            image::ImageFormat::Tiff => {
                drop(decoder);
                return super::scaled_decode::decode_tiff_scaled(path, max_pixels, max_alloc);
            }
            _ => {}
        }
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} is {:.1} MP, more than max_pixels ({:.1} MP, set by memory_budget_mb); \
             raise memory_budget_mb or max_pixels, or send it as JPEG, PNG or TIFF, which are decoded scaled down",
            pixels as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    // The decoder's own buffer plus the RGB8 copy; 16-bit and alpha formats
    // need more than plain RGB, and are checked before decoding too.
    let needed = decoder.total_bytes().saturating_add(pixels * 3);
    if needed > max_alloc {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} in this pixel format needs {} MiB to decode, the limit is {} MiB; \
             raise memory_budget_mb or send 8-bit RGB",
            needed >> 20,
            max_alloc >> 20
        )));
    }
    // A broken EXIF block should not cost the operator the frame.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let img = image::DynamicImage::from_decoder(decoder)?;
    let image = oriented_rgb(img, orientation);
    Ok(Decoded {
        frame_w: image.width(),
        frame_h: image.height(),
        image,
    })
}

fn oriented_rgb(
    mut img: image::DynamicImage,
    orientation: image::metadata::Orientation,
) -> RgbImage {
    img.apply_orientation(orientation);
    match img {
        image::DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    }
}

/// A baseline JPEG larger than `max_pixels`, decoded at the largest DCT
/// scale (1/2, 1/4, 1/8) that fits.
fn decode_jpeg_scaled(path: &Path, max_pixels: u64) -> Result<Decoded, DecodeError> {
    let file = BufReader::new(std::fs::File::open(path)?);
    let mut jpeg = jpeg_decoder::Decoder::new(file);
    jpeg.read_info().map_err(jpeg_error)?;
    let info = jpeg.info().expect("read_info succeeded");
    let (w, h) = (info.width as u64, info.height as u64);
    if info.coding_process != jpeg_decoder::CodingProcess::DctSequential {
        // Progressive JPEGs keep every DCT coefficient of the full frame in
        // memory whatever the output scale.
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} progressive JPEG is {:.1} MP, more than max_pixels ({:.1} MP), and only \
             baseline JPEGs can be decoded scaled down; re-encode it as baseline or raise memory_budget_mb",
            (w * h) as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    }
    let Some(denom) = [2u64, 4, 8]
        .into_iter()
        .find(|d| w.div_ceil(*d) * h.div_ceil(*d) <= max_pixels)
    else {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} JPEG is {:.1} MP; even at 1/8 scale it exceeds max_pixels ({:.1} MP); \
             raise memory_budget_mb or max_pixels",
            (w * h) as f64 / 1e6,
            max_pixels as f64 / 1e6
        )));
    };
    let (sw, sh) = jpeg
        .scale(w.div_ceil(denom) as u16, h.div_ceil(denom) as u16)
        .map_err(jpeg_error)?;
    jpeg.set_max_decoding_buffer_size((max_pixels * 3) as usize);
    let raw = jpeg.decode().map_err(jpeg_error)?;
    let (sw, sh) = (sw as u32, sh as u32);
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(sw, sh, raw),
        jpeg_decoder::PixelFormat::L8 => {
            RgbImage::from_raw(sw, sh, raw.iter().flat_map(|&v| [v, v, v]).collect())
        }
        jpeg_decoder::PixelFormat::CMYK32 => RgbImage::from_raw(
            sw,
            sh,
            raw.chunks_exact(4)
                .flat_map(|p| {
                    // Adobe CMYK JPEGs are stored inverted.
                    let k = p[3] as u32;
                    [0, 1, 2].map(|i| (p[i] as u32 * k / 255) as u8)
                })
                .collect(),
        ),
        jpeg_decoder::PixelFormat::L16 => None,
    }
    .ok_or_else(|| DecodeError::Corrupt("unexpected JPEG pixel layout".into()))?;
    let orientation = jpeg
        .exif_data()
        .and_then(image::metadata::Orientation::from_exif_chunk)
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let image = oriented_rgb(image::DynamicImage::ImageRgb8(rgb), orientation);
    let swaps = matches!(
        orientation,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    let (frame_w, frame_h) = if swaps { (h, w) } else { (w, h) };
    Ok(Decoded {
        image,
        frame_w: frame_w as u32,
        frame_h: frame_h as u32,
    })
}

fn jpeg_error(e: jpeg_decoder::Error) -> DecodeError {
    match e {
        jpeg_decoder::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the data ends early (truncated file?)".into())
        }
        jpeg_decoder::Error::Io(e) => DecodeError::Io(e),
        other => DecodeError::Corrupt(other.to_string()),
    }
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

/// The three planes of one image in `data`, in R, G, B order whatever order
/// they are stored in.
fn planes(data: &mut [f32], plane: usize, bgr: bool) -> [&mut [f32]; 3] {
    let (first, rest) = data.split_at_mut(plane);
    let (second, third) = rest.split_at_mut(plane);
    if bgr {
        [third, second, first]
    } else {
        [first, second, third]
    }
}

/// Per-worker pre-processing state: the resizer and its buffers are reused
/// from frame to frame.
pub struct Preprocessor {
    resizer: Resizer,
    options: ResizeOptions,
    resized: Vec<u8>,
    /// `lut[c][v]`: channel `c` (R, G, B) value `v` normalised.
    lut: [[f32; 256]; 3],
    /// Planes written B, G, R instead of R, G, B.
    bgr: bool,
}

impl Default for Preprocessor {
    fn default() -> Self {
        Self::new()
    }
}

impl Preprocessor {
    /// A preprocessor with the DB normalisation `(v/255 - 0.5) / 0.5`, BGR.
    pub fn new() -> Self {
        Self::with_normalisation([0.5; 3], [0.5; 3], true)
    }

    /// Input = `(v/255 - mean[c]) / std[c]` per RGB channel `c`; planes in
    /// B, G, R order when `bgr`.
    pub fn with_normalisation(mean: [f32; 3], std: [f32; 3], bgr: bool) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, slot) in table.iter_mut().enumerate() {
                *slot = (v as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        Preprocessor {
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
            resized: Vec::new(),
            lut,
            bgr,
        }
    }

    /// Writes RGB8 `row` into planes `p` from index `at`.
    fn put_row(lut: &[[f32; 256]; 3], p: &mut [&mut [f32]; 3], at: usize, row: &[u8]) {
        for (x, px) in row.chunks_exact(3).enumerate() {
            p[0][at + x] = lut[0][px[0] as usize];
            p[1][at + x] = lut[1][px[1] as usize];
            p[2][at + x] = lut[2][px[2] as usize];
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
        let mut p = planes(&mut data, plane, self.bgr);
        Self::put_row(&self.lut, &mut p, 0, pixels);
        TensorBatch {
            shape: [1, 3, height as usize, width as usize],
            data,
        }
    }
}

impl Preprocessor {
    /// Cuts tiles `indices` of `plan` out of `img` (resampling when the plan
    /// scales) into one `[n, 3, h, w]` tensor; all the tiles must share a
    /// shape. Padding beyond the frame edge is 0 (mid-grey after normalising).
    pub fn tiles_to_tensor(
        &mut self,
        img: &RgbImage,
        plan: &TilePlan,
        indices: &[usize],
    ) -> TensorBatch {
        let (th, tw) = plan.tiles[indices[0]].hw();
        let (th, tw) = (th as usize, tw as usize);
        let plane = th * tw;
        let mut data = vec![0f32; indices.len() * 3 * plane];
        for (k, &i) in indices.iter().enumerate() {
            debug_assert_eq!(plan.tiles[i].hw(), (th as u32, tw as u32));
            let ([left, top, rw, rh], (vw, vh)) = plan.source_rect(i);
            let (vw, vh) = (vw as usize, vh as usize);
            let exact =
                left.fract() == 0.0 && top.fract() == 0.0 && rw == vw as f64 && rh == vh as f64;
            let (src, stride, x0, y0): (&[u8], usize, usize, usize) = if exact {
                (
                    img.as_raw(),
                    img.width() as usize * 3,
                    left as usize,
                    top as usize,
                )
            } else {
                self.resample(img, [left, top, rw, rh], vw, vh);
                (&self.resized, vw * 3, 0, 0)
            };
            let lut = &self.lut;
            let bgr = self.bgr;
            let mut p = planes(&mut data[k * 3 * plane..(k + 1) * 3 * plane], plane, bgr);
            for y in 0..vh {
                let row = &src[(y0 + y) * stride + x0 * 3..][..vw * 3];
                Self::put_row(lut, &mut p, y * tw, row);
            }
        }
        TensorBatch {
            shape: [indices.len(), 3, th, tw],
            data,
        }
    }
}

impl Preprocessor {
    /// Resamples the region `[left, top, width, height]` (frame pixels,
    /// sub-pixel) of `img` to `w`×`h` RGB8 in `self.resized`.
    fn resample(&mut self, img: &RgbImage, region: [f64; 4], w: usize, h: usize) {
        let [left, top, rw, rh] = region;
        self.resized.resize(w * h * 3, 0);
        let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
            .expect("RgbImage buffers always match their dimensions");
        let mut dst = Image::from_slice_u8(w as u32, h as u32, &mut self.resized, PixelType::U8x3)
            .expect("buffer was sized for the destination");
        // Float rounding must not push the crop past the frame edge.
        let rw = rw.min(img.width() as f64 - left);
        let rh = rh.min(img.height() as f64 - top);
        let options = self.options.crop(left, top, rw, rh);
        self.resizer
            .resize(&src, &mut dst, &options)
            .expect("crop lies inside the frame and both images are U8x3");
    }

    /// Resamples `place.src` of `img` into `place.dst` of a `[1, 3, h, w]`
    /// input; the rest of the input is `fill` (normalised like a pixel).
    pub fn place_to_tensor(&mut self, img: &RgbImage, place: &Placement, fill: u8) -> TensorBatch {
        let (tw, th) = (place.input.0 as usize, place.input.1 as usize);
        let [dx, dy, dw, dh] = place.dst.map(|v| v as usize);
        let plane = tw * th;
        let mut data = vec![0f32; 3 * plane];
        let lut = self.lut;
        let bgr = self.bgr;
        let mut p = planes(&mut data, plane, bgr);
        for (c, slot) in p.iter_mut().enumerate() {
            slot.fill(lut[c][fill as usize]);
        }
        self.resample(img, place.src, dw, dh);
        for y in 0..dh {
            let row = &self.resized[y * dw * 3..][..dw * 3];
            Self::put_row(&lut, &mut p, (dy + y) * tw + dx, row);
        }
        TensorBatch {
            shape: [1, 3, th, tw],
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
    fn tiles_copy_their_window_and_pad_beyond_the_edge() {
        use crate::infer::tiling::{TilePlan, TilingConfig};
        // A horizontal gradient: red channel = x.
        let img = RgbImage::from_fn(200, 40, |x, _| image::Rgb([x as u8, 0, 0]));
        let cfg = TilingConfig {
            tile: 128,
            overlap: 32,
            ..TilingConfig::default()
        };
        let plan = TilePlan::new(200, 40, &cfg);
        assert_eq!(plan.tiles.len(), 2);
        let t = Preprocessor::new().tiles_to_tensor(&img, &plan, &[0, 1]);
        assert_eq!(t.shape, [2, 3, 64, 128]);
        let plane = 64 * 128;
        let norm = |v: f32| (v / 255.0 - 0.5) / 0.5;
        // Second tile starts at x = 72: its R plane (third) at column 5 is x = 77.
        let second_r = &t.data[3 * plane + 2 * plane..];
        assert!((second_r[5] - norm(77.0)).abs() < 1e-6);
        // Rows past the frame's 40 are padding.
        assert_eq!(second_r[50 * 128 + 5], 0.0);
        // Scaled ×0.5: the tile samples every other column.
        let half = TilingConfig { scale: 0.5, ..cfg };
        let plan = TilePlan::new(200, 40, &half);
        let t = Preprocessor::new().tiles_to_tensor(&img, &plan, &[0]);
        assert_eq!(t.shape, [1, 3, 32, 128]);
        let r = &t.data[2 * 32 * 128..];
        assert!((r[50] - norm(100.5)).abs() < 0.02, "{}", r[50]);
    }

    #[test]
    fn a_big_baseline_jpeg_is_decoded_scaled_down_and_keeps_its_frame_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.jpg");
        RgbImage::from_pixel(1600, 1200, image::Rgb([10, 200, 30]))
            .save(&p)
            .unwrap();
        let d = decode_file(&p, 600_000).unwrap();
        assert_eq!((d.frame_w, d.frame_h), (1600, 1200));
        assert_eq!((d.image.width(), d.image.height()), (800, 600));
        let px = d.image.get_pixel(400, 300).0;
        assert!(px[1] > 180 && px[0] < 40, "{px:?}");
        // At 1/8 it would still be too big: refused, with the knob named.
        let Err(err) = decode_file(&p, 20_000) else {
            panic!("accepted")
        };
        assert!(err.to_string().contains("max_pixels"), "{err}");
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
            let rgb = decode_file(&p, 1 << 30).unwrap().image;
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
        let upright = decode_file(&plain, 1 << 30).unwrap().image;
        assert_eq!((upright.width(), upright.height()), (40, 20));
        let rotated = dir.path().join("rot90.jpg");
        std::fs::write(&rotated, jpeg_with_orientation(&img, 6)).unwrap();
        let r = decode_file(&rotated, 1 << 30).unwrap().image;
        // Orientation 6: rotate 90° clockwise; the black left half ends on top.
        assert_eq!((r.width(), r.height()), (20, 40));
        assert!(r.get_pixel(10, 5).0[0] < 40, "top is black");
        assert!(r.get_pixel(10, 35).0[0] > 215, "bottom is white");
    }

    /// A PNG above max_pixels is decoded scaled down (a 400-dpi scan);
    /// one that would need more than 1/8 is refused before a row is read.
    #[test]
    fn a_large_png_is_scaled_and_a_bomb_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.png");
        image::GrayImage::from_pixel(4000, 4000, image::Luma([200]))
            .save(&p)
            .unwrap();
        let d = decode_file(&p, 1 << 20).unwrap();
        assert_eq!((d.frame_w, d.frame_h), (4000, 4000));
        assert_eq!((d.image.width(), d.image.height()), (1000, 1000));
        assert_eq!(d.image.get_pixel(500, 500).0, [200, 200, 200]);
        // 20000 x 20000 1-bit: 400 MP in a few kB.
        let bomb = dir.path().join("bomb.png");
        let mut enc = png::Encoder::new(std::fs::File::create(&bomb).unwrap(), 20_000, 20_000);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc.write_header().unwrap().into_stream_writer().unwrap();
        let row = vec![0u8; 2500];
        for _ in 0..20_000 {
            std::io::Write::write_all(&mut w, &row).unwrap();
        }
        w.finish().unwrap();
        let Err(err) = decode_file(&bomb, 1 << 20) else {
            panic!("bomb was accepted")
        };
        assert!(matches!(err, DecodeError::TooLarge(_)), "{err:?}");
        assert!(err.to_string().contains("1/8"), "{err}");
    }
}
