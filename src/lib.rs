//! edgewatch: an inference daemon for the edge.
//!
//! # How a frame flows
//!
//! ```text
//! source ──▶ LatestFrame ──▶ workers ──▶ infer ──▶ postprocess ──▶ read ──▶ events ──▶ sink
//! (folder,    (one slot per   (runtime/)  (engine,   (boxes from     (text in  (tracks,    (MQTT via the
//!  camera,     stream, the                 tiles,     the model's     each      zones,      durable outbox,
//!  RTSP,       newest frame                budget)    outputs)        box)      snapshots)  Home Assistant)
//!  replay)     wins)
//! ```
//!
//! Folder files skip the slot and the events: each file is one job and one
//! message. `telemetry` watches every stage from the side.
//!
//! # The layers: a module uses only what lies below it
//!
//! ```text
//! cli/          the commands, one file each (main.rs only calls cli::main)
//! runtime/      daemon, running sources, workers, reload, inference set-up,
//!               supervision, TensorRT start-up, the allocator
//! config.rs     the whole file: every section, checked together
//! telemetry/    metrics, /metrics and /healthz, logging
//! sink/         payloads, the outbox, MQTT, Home Assistant discovery
//! source/       folders, V4L2, RTSP, replay; the latest-frame slot, motion
//! events/       scenes, tracks, zones, snapshots
//! read/         second models on the boxes' crops: text (CTC), filters
//! infer/        engines (tract, ONNX Runtime, TensorRT), tiling, the memory plan
//! postprocess/  detections from outputs: DB text, YOLO, classify, merging
//! base/         shared by all: shutdown, back-off, restarts, heartbeats,
//!               frame identity, topics, secrets, config spans, text
//! ```
//!
//! `source` sits above `infer` and `events` because a stream keeps its own
//! tile reuse, motion grid and scene keys; data still only flows forward.
//! `tests/it/layout.rs` checks that CONTRIBUTING.md's map names every folder
//! and file here.

pub mod base;
pub mod cli;
pub mod config;
pub mod events;
pub mod infer;
pub mod postprocess;
pub mod read;
pub mod runtime;
pub mod sink;
pub mod source;
pub mod telemetry;
