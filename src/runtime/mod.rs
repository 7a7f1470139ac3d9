//! The running daemon, above every stage: it reads the config, sets up
//! inference, starts the sources, the workers and the sink, reloads on
//! SIGHUP and supervises them all.

pub(crate) mod daemon;
#[cfg(feature = "tensorrt")]
pub(crate) mod engine_build;
pub(crate) mod hugepages;
pub(crate) mod inference;
pub(crate) mod reload;
pub(crate) mod seams;
pub(crate) mod workers;

pub use hugepages::HugePageAlloc;
pub use inference::{detector_settings, load_model};
pub use seams::Seams;
