//! Snapshots: a JPEG crop of an object with a margin, its longest side
//! bounded, and the directory they may be written into, kept within a size
//! and an age.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use image::RgbImage;

use super::config::SnapshotConfig;

/// The crop of `bbox` grown by `margin` of its size on each side, clipped to
/// the frame, scaled so its longest side is at most `max_side`, as JPEG.
pub fn encode(frame: &RgbImage, bbox: &[f32; 4], cfg: &SnapshotConfig) -> Result<Vec<u8>, String> {
    let (fw, fh) = (frame.width() as f32, frame.height() as f32);
    let (w, h) = (bbox[2] - bbox[0], bbox[3] - bbox[1]);
    let (mx, my) = (w * cfg.margin, h * cfg.margin);
    let x0 = (bbox[0] - mx).clamp(0.0, fw - 1.0).floor() as u32;
    let y0 = (bbox[1] - my).clamp(0.0, fh - 1.0).floor() as u32;
    let x1 = (bbox[2] + mx).clamp(x0 as f32 + 1.0, fw).ceil() as u32;
    let y1 = (bbox[3] + my).clamp(y0 as f32 + 1.0, fh).ceil() as u32;
    let crop = image::imageops::crop_imm(frame, x0, y0, x1 - x0, y1 - y0).to_image();
    let longest = crop.width().max(crop.height());
    let crop = if longest > cfg.max_side {
        let k = cfg.max_side as f32 / longest as f32;
        let (nw, nh) = (
            ((crop.width() as f32 * k).round() as u32).max(1),
            ((crop.height() as f32 * k).round() as u32).max(1),
        );
        image::imageops::resize(&crop, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        crop
    };
    let mut out = Vec::with_capacity(crop.len() / 4);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, cfg.quality)
        .encode_image(&crop)
        .map_err(|e| format!("cannot encode a snapshot: {e}"))?;
    Ok(out)
}

/// A snapshot directory: files are written whole (temporary name, then
/// rename) and the oldest go once the directory is over its size or age.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    dir: PathBuf,
    max_bytes: u64,
    keep: Duration,
}

impl SnapshotDir {
    /// The directory `dir/source`, created if missing.
    pub fn open(dir: &Path, source: &str, cfg: &SnapshotConfig) -> std::io::Result<SnapshotDir> {
        let dir = dir.join(source);
        std::fs::create_dir_all(&dir)?;
        Ok(SnapshotDir {
            dir,
            max_bytes: (cfg.max_mb * 1048576.0) as u64,
            keep: Duration::from_secs_f64(cfg.keep_days * 86400.0),
        })
    }

    /// Writes `name` and prunes. Returns the file's path.
    pub fn write(&self, name: &str, jpeg: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, jpeg)?;
        std::fs::rename(&tmp, &path)?;
        self.prune(SystemTime::now())?;
        Ok(path)
    }

    /// Removes files older than the age limit, then the oldest until the
    /// rest fit the size limit.
    pub fn prune(&self, now: SystemTime) -> std::io::Result<()> {
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_file() && entry.file_name().to_string_lossy().ends_with(".jpg") {
                files.push((meta.modified()?, meta.len(), entry.path()));
            }
        }
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        for (modified, len, path) in files {
            let old = now.duration_since(modified).unwrap_or_default() > self.keep;
            if old || total > self.max_bytes {
                std::fs::remove_file(&path)?;
                total -= len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::config::SnapshotTarget;

    fn cfg() -> SnapshotConfig {
        SnapshotConfig {
            to: SnapshotTarget::Dir,
            dir: None,
            max_side: 64,
            margin: 0.5,
            quality: 80,
            best: false,
            max_mb: 1.0,
            keep_days: 1.0,
        }
    }

    #[test]
    fn a_crop_has_its_margin_its_longest_side_and_the_box_inside() {
        let mut frame = RgbImage::new(400, 300);
        for p in frame.pixels_mut() {
            *p = image::Rgb([0, 0, 255]);
        }
        // A red box at 100..200 × 100..150.
        for y in 100..150 {
            for x in 100..200 {
                frame.put_pixel(x, y, image::Rgb([255, 0, 0]));
            }
        }
        let jpeg = encode(&frame, &[100.0, 100.0, 200.0, 150.0], &cfg()).unwrap();
        let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        // 200×100 with the margin, scaled to 64 wide.
        assert_eq!((img.width(), img.height()), (64, 32));
        assert!(img.get_pixel(32, 16)[0] > 200, "the box is at the centre");
        assert!(
            img.get_pixel(3, 3)[2] > 200,
            "the margin shows the background"
        );
        // A box at the frame's edge is clipped, not an error.
        let jpeg = encode(&frame, &[380.0, 280.0, 400.0, 300.0], &cfg()).unwrap();
        let img = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((img.width(), img.height()), (30, 30));
    }

    #[test]
    fn the_directory_keeps_to_its_size() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.max_mb = 2500.0 / 1048576.0;
        let dir = SnapshotDir::open(tmp.path(), "cam", &c).unwrap();
        for i in 0..5 {
            dir.write(&format!("{i}.jpg"), &[0u8; 1000]).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut left: Vec<String> = std::fs::read_dir(tmp.path().join("cam"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["3.jpg", "4.jpg"]);
        // Age: everything is older than a day from a day and a bit on.
        dir.prune(SystemTime::now() + Duration::from_secs(90_000))
            .unwrap();
        assert_eq!(
            std::fs::read_dir(tmp.path().join("cam")).unwrap().count(),
            0
        );
    }
}
