//! From detections to events, for camera, RTSP and replay streams: masks
//! and zones, a tracker per stream, the new/update/end policy, snapshots,
//! and the objects-present state. Sits between inference and the sink: it
//! takes detections and frames, and hands back messages to publish.

pub(crate) mod config;
pub(crate) mod message;
pub(crate) mod scene;
pub(crate) mod snapshot;
pub(crate) mod tracker;
pub(crate) mod zones;

pub use config::{default_publish, EventsConfig, SceneConfig, ZoneConfig};
pub use scene::SceneTracker;
