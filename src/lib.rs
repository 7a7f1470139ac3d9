//! edgewatch: an inference daemon for the edge. Frames flow one way:
//! source → infer → sink.

pub mod budget;
pub mod config;
pub mod config_spans;
pub mod daemon;
pub mod events;
pub mod frame;
pub mod hugepages;
pub mod infer;
pub mod postprocess;
pub mod reload;
pub mod secrets;
pub mod setup;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod supervise;
pub mod telemetry;
#[cfg(feature = "tensorrt")]
pub mod tensorrt_startup;
pub mod topic;
pub mod workers;
