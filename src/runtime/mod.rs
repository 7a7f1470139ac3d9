//! The running daemon, above every stage: it reads the config, sets up
//! inference, starts the sources, the workers and the sink, reloads on
//! SIGHUP and supervises them all.

pub mod daemon;
#[cfg(feature = "tensorrt")]
pub mod engine_build;
pub mod hugepages;
pub mod inference;
pub mod reload;
pub mod seams;
pub mod workers;
