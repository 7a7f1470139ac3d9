//! The running daemon, above every stage: it reads the config, sets up
//! inference, starts the sources, the workers and the sink, reloads on
//! SIGHUP and supervises them all.

pub mod daemon;
pub mod hugepages;
pub mod inference;
pub mod reload;
pub mod seams;
#[cfg(feature = "tensorrt")]
pub mod tensorrt;
pub mod workers;
