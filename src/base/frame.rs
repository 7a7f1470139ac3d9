//! A frame's identity: where it came from and when. Pixels travel beside it.

use std::path::PathBuf;
use std::time::SystemTime;

/// Identity and provenance of one frame.
#[derive(Debug, Clone)]
pub struct FrameMeta {
    /// Source name from the config.
    pub source: String,
    /// Per-source sequence number within this process.
    pub seq: u64,
    /// Stable message id: the same input gives the same id after a restart,
    /// so consumers can drop at-least-once duplicates.
    pub id: String,
    /// When the frame was captured (a file's modification time).
    pub captured_at: SystemTime,
    /// Where the frame came from, for files.
    pub path: Option<PathBuf>,
}

/// A message id, `{source}-{16 hex digits}`: the first 8 bytes of SHA-256
/// over `parts`, then `at` in nanoseconds since the epoch. Every source's
/// ids look alike; which parts make one stable is each source's choice.
pub fn frame_id(source: &str, parts: &[&[u8]], at: SystemTime) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in parts {
        h.update(part);
    }
    let nanos = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.update(nanos.to_le_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{source}-{hex}")
}
