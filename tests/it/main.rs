//! Every integration test, in one binary: linked once (tract, rustls and all)
//! instead of once per file. Each module is one capability, run against the
//! real parts (`common`: mosquitto, the daemon, the models).
//!
//! One module: `cargo test --test it power_cut::`.

mod common;

mod bad_input;
mod camera_replay;
mod camera_stream;
mod camera_v4l2;
mod daemon_e2e;
mod decoders;
mod delivery;
mod detect_cli;
mod disk_full;
mod docs_contract;
mod events;
mod families;
mod journald;
mod layout;
mod memory_budget;
mod onnxruntime;
mod power_cut;
mod read;
mod real_inputs;
mod reload_sources;
mod restart;
mod rtsp;
mod systemd_notify;
mod systemd_unit;
mod telemetry;
mod tensorrt_cli;
mod tiling;
mod tls;
