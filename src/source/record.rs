//! `edgewatch record`: replay files from a real camera, or from still images
//! (to try a config, or to test, without a camera).

use std::path::Path;
use std::time::Duration;

use image::RgbImage;

use super::pixels::{rgb_to_yuyv, PixelFormat};
use super::replay::{ReplayHeader, ReplayWriter};
use super::stream::{Granted, Open};

/// Why a recording failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The device or an image could not be read.
    #[error("{0}")]
    Input(String),
    /// The replay file could not be written.
    #[error("cannot write {path}: {err}")]
    Write {
        /// Replay file.
        path: String,
        /// Why.
        err: std::io::Error,
    },
}

fn write_err(path: &Path) -> impl Fn(std::io::Error) -> RecordError + '_ {
    move |err| RecordError::Write {
        path: path.display().to_string(),
        err,
    }
}

/// Records `frames` frames from an opened device into `out`, as delivered.
pub fn from_device(open: &mut dyn Open, frames: u64, out: &Path) -> Result<Granted, RecordError> {
    let mut capture = open.open().map_err(|e| RecordError::Input(e.to_string()))?;
    let granted = capture.granted();
    let mut writer = ReplayWriter::create(
        out,
        ReplayHeader {
            format: granted.format,
            width: granted.width,
            height: granted.height,
            fps: granted.fps,
        },
    )
    .map_err(write_err(out))?;
    for _ in 0..frames {
        let raw = capture
            .next_frame()
            .map_err(|e| RecordError::Input(e.to_string()))?;
        writer.push(raw.data).map_err(write_err(out))?;
    }
    writer.finish().map_err(write_err(out))?;
    Ok(granted)
}

/// Encodes one RGB image as a camera in `format` would deliver it.
pub fn encode_frame(img: &RgbImage, format: PixelFormat) -> Vec<u8> {
    match format {
        PixelFormat::Rgb3 => img.as_raw().clone(),
        PixelFormat::Grey => image::DynamicImage::ImageRgb8(img.clone())
            .to_luma8()
            .into_raw(),
        PixelFormat::Yuyv => rgb_to_yuyv(img),
        PixelFormat::Mjpeg => {
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                .encode_image(img)
                .expect("encoding into memory cannot fail");
            bytes
        }
    }
}

/// Writes `images` (all the same size) into `out` as `format` frames, one
/// every `1/fps` seconds of recorded time.
pub fn from_images(
    images: &[std::path::PathBuf],
    format: PixelFormat,
    fps: f64,
    out: &Path,
) -> Result<(u32, u32), RecordError> {
    let mut writer: Option<(ReplayWriter, u32, u32)> = None;
    for (i, path) in images.iter().enumerate() {
        let img = image::open(path)
            .map_err(|e| RecordError::Input(format!("{}: {e}", path.display())))?
            .to_rgb8();
        let (w, h) = img.dimensions();
        if format == PixelFormat::Yuyv && w % 2 == 1 {
            return Err(RecordError::Input(format!(
                "{}: yuyv needs an even width, this one is {w}",
                path.display()
            )));
        }
        let (writer, ww, wh) = match &mut writer {
            Some(x) => x,
            None => writer.insert((
                ReplayWriter::create(
                    out,
                    ReplayHeader {
                        format,
                        width: w,
                        height: h,
                        fps: Some(fps),
                    },
                )
                .map_err(write_err(out))?,
                w,
                h,
            )),
        };
        if (w, h) != (*ww, *wh) {
            return Err(RecordError::Input(format!(
                "{} is {w}x{h}, the first image is {ww}x{wh}; a stream has one size",
                path.display()
            )));
        }
        let at = Duration::from_secs_f64(i as f64 / fps);
        writer
            .push_at(at, &encode_frame(&img, format))
            .map_err(write_err(out))?;
    }
    match writer {
        Some((w, width, height)) => {
            w.finish().map_err(write_err(out))?;
            Ok((width, height))
        }
        None => Err(RecordError::Input("no images given".into())),
    }
}
