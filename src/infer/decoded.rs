//! What decoding an image file gives: its pixels and the frame size they
//! stand for, or why it could not be decoded.

use image::RgbImage;

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
    /// A FIFO, device or directory.
    #[error("not a regular file (a FIFO, device or directory); give an image file")]
    NotAFile,
    /// Far more pixels declared than the file's size can hold.
    #[error("implausible image size: {0}")]
    Implausible(String),
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
            other => DecodeError::Corrupt(crate::base::text::one_line(&other.to_string())),
        }
    }
}

/// Pixels of one frame, and the size of the frame they came from (larger
/// when a big JPEG was decoded scaled down).
#[derive(Debug)]
pub struct Decoded {
    /// RGB8 pixels, EXIF orientation applied.
    pub image: RgbImage,
    /// Width of the original frame, oriented; detections are reported in it.
    pub frame_w: u32,
    /// Height of the original frame, oriented.
    pub frame_h: u32,
}
