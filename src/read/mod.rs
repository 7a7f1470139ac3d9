//! The second stage: a recognizer run on the crops of the detector's boxes,
//! so a message says what the text in a box is, not only where. The
//! detector calls it through `infer::detector::SecondStage` on the frame it
//! already holds.

pub(crate) mod config;
pub(crate) mod crop;
pub(crate) mod ctc;
pub(crate) mod filters;
pub(crate) mod reader;

pub use config::ReadConfig;
pub use ctc::{decode, Dictionary, DictionaryError};
pub use reader::{ReadError, ReadModel, Reader};
