//! Where a test puts its own part into a real run: the engine. A test
//! binary (`tests/tools/faulty_engine.rs`) wraps the real model's engines in
//! one that panics or hangs on frames of a colour it picks, so the panic
//! and hang paths of `run` and `detect` are tested end to end without a
//! switch in the shipped code. `edgewatch` itself runs with
//! `Seams::default()`: nothing is wrapped.

use std::sync::Arc;

use crate::infer::EngineFactory;

/// Wraps the engine factory a model loaded with.
pub type WrapEngine = fn(Arc<dyn EngineFactory>) -> Arc<dyn EngineFactory>;

/// What a run takes from outside the config.
#[derive(Clone, Copy, Default)]
pub struct Seams {
    /// Replaces the loaded engine factory before any worker takes one.
    pub wrap_engine: Option<WrapEngine>,
}

impl Seams {
    /// `factory`, wrapped if a wrapper is set.
    pub fn engines(&self, factory: Arc<dyn EngineFactory>) -> Arc<dyn EngineFactory> {
        match self.wrap_engine {
            Some(wrap) => wrap(factory),
            None => factory,
        }
    }
}
