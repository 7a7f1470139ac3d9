//! From detections to events, for camera, RTSP and replay streams: masks
//! and zones, a tracker per stream, the new/update/end policy, snapshots,
//! and the objects-present state. Sits between inference and the sink: it
//! takes detections and frames, and hands back messages to publish.

pub mod config;
pub mod message;
pub mod scene;
pub mod snapshot;
pub mod tracker;
pub mod zones;
