//! PNG and TIFF frames larger than the memory plan's `max_pixels` (a 400 or
//! 600 dpi scan), decoded row by row or strip by strip and shrunk by a whole
//! factor while decoding, so the full-size frame never exists in memory.
//! A box filter (the mean of each f×f block) keeps thin strokes visible, as
//! a JPEG's DCT scaling does.

use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

use image::RgbImage;

use super::decoded::{DecodeError, Decoded};

/// Largest shrink: as a JPEG's DCT scaling. A frame that needs more is
/// a bomb or a mistake (64 × max_pixels: 500 MP with the default plan), and
/// would cost a worker seconds to read for a picture that shows nothing.
pub const MAX_SHRINK: u64 = 8;

/// The smallest whole factor that brings `w`×`h` within `max_pixels`.
pub fn shrink_factor(w: u64, h: u64, max_pixels: u64) -> Option<u64> {
    (2..=MAX_SHRINK).find(|f| w.div_ceil(*f) * h.div_ceil(*f) <= max_pixels)
}

/// Sums f×f blocks of RGB rows into the output, one band of output rows at
/// a time: memory is the output plus a band of 32-bit sums.
struct Shrinker {
    f: u32,
    src_w: u32,
    src_h: u32,
    out: RgbImage,
    /// Sums for output rows `band_start..band_start + band_rows`, RGB.
    sums: Vec<u32>,
    band_start: u32,
    band_rows: u32,
}

impl Shrinker {
    fn new(src_w: u32, src_h: u32, f: u32) -> Shrinker {
        Shrinker {
            f,
            src_w,
            src_h,
            out: RgbImage::new(src_w.div_ceil(f), src_h.div_ceil(f)),
            sums: Vec::new(),
            band_start: 0,
            band_rows: 0,
        }
    }

    fn out_w(&self) -> usize {
        self.out.width() as usize
    }

    /// Adds one RGB8 source row segment starting at (`x0`, `y`).
    fn add_row(&mut self, x0: u32, y: u32, rgb: &[u8]) {
        let oy = y / self.f;
        if oy < self.band_start {
            return; // already flushed (a malformed file repeating rows)
        }
        let need = oy - self.band_start + 1;
        if need > self.band_rows {
            self.band_rows = need;
            self.sums.resize(need as usize * self.out_w() * 3, 0);
        }
        let row = (oy - self.band_start) as usize * self.out_w() * 3;
        let f = self.f as usize;
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            let x = x0 as usize + i;
            if x >= self.src_w as usize {
                break;
            }
            let at = row + (x / f) * 3;
            self.sums[at] += px[0] as u32;
            self.sums[at + 1] += px[1] as u32;
            self.sums[at + 2] += px[2] as u32;
        }
    }

    /// Writes out every output row whose source rows all lie above `y`.
    fn flush_above(&mut self, y: u32) {
        let complete = (y / self.f).min(self.out.height());
        if complete <= self.band_start {
            return;
        }
        let rows = (complete - self.band_start).min(self.band_rows);
        let w = self.out_w();
        for r in 0..rows {
            let oy = self.band_start + r;
            let ys = (self.src_h - oy * self.f).min(self.f);
            for ox in 0..w as u32 {
                let xs = (self.src_w - ox * self.f).min(self.f);
                let n = xs * ys;
                let at = (r as usize * w + ox as usize) * 3;
                let px = [0, 1, 2].map(|c| ((self.sums[at + c] + n / 2) / n) as u8);
                self.out.put_pixel(ox, oy, image::Rgb(px));
            }
        }
        // The rows not yet complete move to the front of the band.
        self.sums.drain(..rows as usize * w * 3);
        self.band_rows -= rows;
        self.band_start = complete;
    }

    fn finish(mut self) -> RgbImage {
        self.flush_above(self.src_h + self.f);
        self.out
    }
}

/// Widens one row of 8-bit samples (`channels` per pixel: grey, grey+alpha,
/// RGB, RGBA; alpha is dropped, as the full-size path does) into RGB8.
fn to_rgb(row: &[u8], channels: usize, out: &mut Vec<u8>) {
    out.clear();
    match channels {
        1 | 2 => row
            .chunks_exact(channels)
            .for_each(|p| out.extend_from_slice(&[p[0], p[0], p[0]])),
        _ => row
            .chunks_exact(channels)
            .for_each(|p| out.extend_from_slice(&p[..3])),
    }
}

fn too_large(what: &str, w: u64, h: u64, max_pixels: u64, why: &str) -> DecodeError {
    DecodeError::TooLarge(format!(
        "{w}x{h} {what} is {:.1} MP, more than max_pixels ({:.1} MP), and {why}; raise memory_budget_mb or max_pixels",
        (w * h) as f64 / 1e6,
        max_pixels as f64 / 1e6
    ))
}

/// A PNG larger than `max_pixels`, decoded row by row and shrunk.
pub fn decode_png_scaled(path: &Path, max_pixels: u64) -> Result<Decoded, DecodeError> {
    let file = BufReader::new(std::fs::File::open(path)?);
    decode_png_scaled_from(file, max_pixels)
}

fn decode_png_scaled_from<R: BufRead + Seek>(
    reader: R,
    max_pixels: u64,
) -> Result<Decoded, DecodeError> {
    let mut decoder = png::Decoder::new(reader);
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut png = decoder.read_info().map_err(png_error)?;
    let (w, h, interlaced) = {
        let info = png.info();
        (info.width as u64, info.height as u64, info.interlaced)
    };
    if interlaced {
        // Adam7 passes cover the whole frame seven times: there are no
        // finished rows until the last pass.
        return Err(too_large(
            "interlaced PNG",
            w,
            h,
            max_pixels,
            "only non-interlaced PNGs can be decoded scaled down; re-save it without interlacing",
        ));
    }
    let f = shrink_factor(w, h, max_pixels)
        .ok_or_else(|| too_large("PNG", w, h, max_pixels, "even at 1/8 scale it does not fit"))?;
    let channels = png.output_color_type().0.samples();
    let mut shrink = Shrinker::new(w as u32, h as u32, f as u32);
    let mut rgb = Vec::with_capacity(w as usize * 3);
    let mut y = 0u32;
    while let Some(row) = png.next_row().map_err(png_error)? {
        to_rgb(row.data(), channels, &mut rgb);
        shrink.add_row(0, y, &rgb);
        y += 1;
        if y.is_multiple_of(f as u32) {
            shrink.flush_above(y);
        }
    }
    if (y as u64) < h {
        return Err(DecodeError::Corrupt(format!(
            "the data ends after {y} of {h} rows (truncated file?)"
        )));
    }
    Ok(Decoded {
        image: shrink.finish(),
        frame_w: w as u32,
        frame_h: h as u32,
    })
}

fn png_error(e: png::DecodingError) -> DecodeError {
    match e {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the data ends early (truncated file?)".into())
        }
        png::DecodingError::IoError(e) => DecodeError::Io(e),
        other => DecodeError::Corrupt(crate::base::text::one_line(&other.to_string())),
    }
}

/// A TIFF larger than `max_pixels`, decoded strip by strip (or tile row by
/// tile row) and shrunk. Grey (1, 8, 16 bit), grey+alpha, RGB and RGBA
/// (8, 16 bit), chunky; a single strip must itself fit `max_alloc`.
pub fn decode_tiff_scaled(
    path: &Path,
    max_pixels: u64,
    max_alloc: u64,
) -> Result<Decoded, DecodeError> {
    use tiff::decoder::{Decoder, DecodingResult};
    use tiff::ColorType;
    let file = BufReader::new(std::fs::File::open(path)?);
    let mut tif = Decoder::new(file).map_err(tiff_error)?;
    let (w, h) = tif.dimensions().map_err(tiff_error)?;
    let (w64, h64) = (w as u64, h as u64);
    let color = tif.colortype().map_err(tiff_error)?;
    let (channels, bits) = match color {
        ColorType::Gray(b) => (1usize, b),
        ColorType::GrayA(b) => (2, b),
        ColorType::RGB(b) => (3, b),
        ColorType::RGBA(b) => (4, b),
        other => {
            return Err(too_large(
                "TIFF",
                w64,
                h64,
                max_pixels,
                &format!("{other:?} TIFFs cannot be decoded scaled down (grey, RGB and RGBA can)"),
            ))
        }
    };
    if !matches!((channels, bits), (1, 1) | (_, 8) | (_, 16)) {
        return Err(too_large(
            "TIFF",
            w64,
            h64,
            max_pixels,
            &format!("{bits}-bit samples cannot be decoded scaled down (1, 8 and 16 can)"),
        ));
    }
    let planar = tif
        .find_tag_unsigned::<u16>(tiff::tags::Tag::PlanarConfiguration)
        .map_err(tiff_error)?
        .unwrap_or(1);
    if planar != 1 {
        return Err(too_large(
            "planar TIFF",
            w64,
            h64,
            max_pixels,
            "only chunky (interleaved) TIFFs can be decoded scaled down",
        ));
    }
    let (cw, ch) = tif.chunk_dimensions();
    // A chunk is decoded whole; one holding the whole page is no better
    // than decoding the page.
    let chunk_bytes = cw as u64 * ch as u64 * channels as u64 * (bits as u64).div_ceil(8);
    if chunk_bytes + max_pixels * 3 > max_alloc {
        return Err(too_large(
            "TIFF",
            w64,
            h64,
            max_pixels,
            &format!("it is stored in {cw}x{ch} pieces, too large to decode one at a time; re-save it in strips (e.g. `tiffcp -r 64`)"),
        ));
    }
    let f = shrink_factor(w64, h64, max_pixels).ok_or_else(|| {
        too_large(
            "TIFF",
            w64,
            h64,
            max_pixels,
            "even at 1/8 scale it does not fit",
        )
    })?;
    let mut shrink = Shrinker::new(w, h, f as u32);
    let across = w.div_ceil(cw.max(1));
    let chunks = across * h.div_ceil(ch.max(1));
    let mut rgb = Vec::new();
    let mut band = 0;
    for i in 0..chunks {
        let (x0, y0) = ((i % across) * cw, (i / across) * ch);
        if y0 > band {
            shrink.flush_above(y0);
            band = y0;
        }
        let (dw, dh) = tif.chunk_data_dimensions(i);
        let data = tif.read_chunk(i).map_err(tiff_error)?;
        let bytes: Vec<u8> = match data {
            DecodingResult::U8(v) => v,
            // Big-endian or not, the decoder gives native u16: keep the high byte.
            DecodingResult::U16(v) => v.into_iter().map(|s| (s >> 8) as u8).collect(),
            _ => {
                return Err(DecodeError::Corrupt(
                    "unexpected TIFF sample format (floating point?)".into(),
                ))
            }
        };
        // Rows in a chunk are `cw` wide (tiles are padded; strips are the width).
        let row_samples = if bits == 1 {
            (cw as usize).div_ceil(8)
        } else {
            cw as usize * channels
        };
        for r in 0..dh as usize {
            let Some(row) = bytes.get(r * row_samples..(r + 1) * row_samples) else {
                return Err(DecodeError::Corrupt(
                    "a TIFF strip is shorter than its rows".into(),
                ));
            };
            if bits == 1 {
                rgb.clear();
                for x in 0..dw as usize {
                    let v = if row[x / 8] & (0x80 >> (x % 8)) != 0 {
                        255
                    } else {
                        0
                    };
                    rgb.extend_from_slice(&[v, v, v]);
                }
            } else {
                to_rgb(&row[..dw as usize * channels], channels, &mut rgb);
            }
            shrink.add_row(x0, y0 + r as u32, &rgb);
        }
    }
    Ok(Decoded {
        image: shrink.finish(),
        frame_w: w,
        frame_h: h,
    })
}

fn tiff_error(e: tiff::TiffError) -> DecodeError {
    match e {
        tiff::TiffError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("the data ends early (truncated file?)".into())
        }
        tiff::TiffError::IoError(e) => DecodeError::Io(e),
        tiff::TiffError::LimitsExceeded => {
            DecodeError::TooLarge("a TIFF strip exceeds the decoder's limits".into())
        }
        other => DecodeError::Corrupt(crate::base::text::one_line(&other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page-like picture: white with dark horizontal strokes.
    fn page(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            if (y / 7) % 5 == 0 && x % 50 < 40 {
                image::Rgb([20, 30, 40])
            } else {
                image::Rgb([250, 250, 250])
            }
        })
    }

    /// The mean of each f×f block, computed on the whole image.
    fn reference(img: &RgbImage, f: u32) -> RgbImage {
        let (w, h) = (img.width().div_ceil(f), img.height().div_ceil(f));
        RgbImage::from_fn(w, h, |ox, oy| {
            let mut s = [0u32; 3];
            let mut n = 0;
            for y in oy * f..((oy + 1) * f).min(img.height()) {
                for x in ox * f..((ox + 1) * f).min(img.width()) {
                    let p = img.get_pixel(x, y);
                    (0..3).for_each(|c| s[c] += p[c] as u32);
                    n += 1;
                }
            }
            image::Rgb(s.map(|v| ((v + n / 2) / n) as u8))
        })
    }

    #[test]
    fn a_png_larger_than_the_limit_is_the_block_mean_of_the_full_frame() {
        let dir = tempfile::tempdir().unwrap();
        let img = page(1003, 707);
        let path = dir.path().join("scan.png");
        img.save(&path).unwrap();
        let max = 200_000;
        let d = decode_png_scaled(&path, max).unwrap();
        assert_eq!((d.frame_w, d.frame_h), (1003, 707));
        let f = shrink_factor(1003, 707, max).unwrap() as u32;
        assert_eq!(f, 2);
        assert_eq!(d.image, reference(&img, f));
    }

    #[test]
    fn a_grey_tiff_in_strips_is_the_block_mean_of_the_full_frame() {
        let dir = tempfile::tempdir().unwrap();
        let img = page(999, 601);
        let grey = image::DynamicImage::ImageRgb8(img.clone()).into_luma8();
        let path = dir.path().join("scan.tif");
        grey.save(&path).unwrap();
        let max = 40_000;
        let d = decode_tiff_scaled(&path, max, 64 << 20).unwrap();
        let f = shrink_factor(999, 601, max).unwrap() as u32;
        let expect = reference(&image::DynamicImage::ImageLuma8(grey).into_rgb8(), f);
        assert_eq!(d.image, expect);
        assert_eq!((d.frame_w, d.frame_h), (999, 601));
    }

    #[test]
    fn a_truncated_png_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.png");
        page(800, 600).save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = decode_png_scaled(&path, 100_000).unwrap_err();
        assert!(matches!(e, DecodeError::Corrupt(_)), "{e}");
    }
}
