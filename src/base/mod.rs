//! What every stage shares and nothing in it depends on: stopping, waiting
//! between retries, restarting, heartbeats, a frame's identity, topic names,
//! secrets, configuration issues and where a key sits in its file, and
//! one-line reasons.

pub mod backoff;
pub mod config_spans;
pub mod frame;
pub mod heartbeats;
pub mod issue;
pub mod restart;
pub mod secrets;
pub mod shutdown;
pub mod text;
pub mod topic;
