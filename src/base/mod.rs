//! What every stage shares and nothing in it depends on: stopping, waiting
//! between retries, restarting, heartbeats, a frame's identity, topic names,
//! secrets, configuration issues and where a key sits in its file, and
//! one-line reasons.

pub(crate) mod backoff;
pub(crate) mod config_spans;
pub(crate) mod frame;
pub(crate) mod heartbeats;
pub(crate) mod issue;
pub(crate) mod restart;
pub(crate) mod secrets;
pub(crate) mod shutdown;
pub(crate) mod text;
pub(crate) mod topic;

pub use frame::FrameMeta;
pub use issue::{ConfigError, Issue};
pub use shutdown::Shutdown;
