//! Optional CPU backend on ONNX Runtime (`model.backend = "onnxruntime"`),
//! for operators who have its library: about twice tract's speed per model
//! pixel on this model. The library is found and opened at run time; without
//! it the daemon serves on tract and says why in one line.

pub(crate) mod engine;
pub(crate) mod library;

pub use engine::{open, OrtModel, Runtime, LABEL};
