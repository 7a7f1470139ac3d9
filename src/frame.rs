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
