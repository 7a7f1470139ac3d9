//! CPU backend on tract: pure Rust, no downloads, builds offline.
//!
//! DB models have a dynamic H×W, but tract cannot prove the up-sampled maps of
//! a symbolic `H` line up (it does not simplify `(32h+31)/32` to `h`), so each
//! input shape gets its own optimised plan, built once and cached. Frames of
//! one camera or one tiling setup share a shape, so the cache stays tiny.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tract_onnx::prelude::*;

use super::{Engine, InferError, InputSpec, Outputs, TensorBatch};

/// Distinct input shapes kept optimised at once, per process and per worker.
const MAX_PLANS: usize = 4;

type Plan = Arc<TypedRunnableModel>;

/// A parsed model and its per-shape plans, shared by every worker.
#[derive(Clone)]
pub struct TractModel {
    proto: Arc<InferenceModel>,
    plans: Arc<Mutex<HashMap<[usize; 4], Plan>>>,
    spec: InputSpec,
    path: PathBuf,
}

impl TractModel {
    /// Parses `path`. Plans are built on first use of each input shape.
    pub fn load(path: &Path) -> Result<TractModel, InferError> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| load_error(path, e))?;
        let name = model
            .input_outlets()
            .map_err(|e| load_error(path, e))?
            .first()
            .map(|o| model.node(o.node).name.clone())
            .unwrap_or_else(|| "x".to_string());
        // Exports such as Ultralytics' are fixed at one H×W; DB models are dynamic.
        let fixed_hw = model
            .input_fact(0)
            .ok()
            .and_then(|f| f.shape.as_concrete_finite().ok().flatten())
            .and_then(|s| match s.as_slice() {
                [_, _, h, w] => Some((*h, *w)),
                _ => None,
            });
        Ok(TractModel {
            proto: Arc::new(model),
            plans: Arc::new(Mutex::new(HashMap::new())),
            spec: InputSpec {
                name,
                fixed_hw,
                max_batch: 8,
            },
            path: path.to_path_buf(),
        })
    }

    /// What the model accepts.
    pub fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    /// A string from the ONNX metadata (`metadata_props`), e.g. `names`.
    pub fn metadata(&self, key: &str) -> Option<String> {
        self.proto
            .properties
            .get(&format!("onnx.metadata_props.{key}"))
            .and_then(|t| {
                t.try_as_plain_ram()
                    .ok()?
                    .to_scalar::<String>()
                    .ok()
                    .cloned()
            })
    }

    /// The first output's shape for NCHW input `shape`.
    pub fn output_shape(&self, shape: [usize; 4]) -> Result<Vec<usize>, InferError> {
        let plan = self.plan(shape)?;
        let fact = plan
            .model()
            .output_fact(0)
            .map_err(|e| load_error(&self.path, e))?;
        fact.shape
            .as_concrete()
            .map(<[usize]>::to_vec)
            .ok_or_else(|| InferError::Load {
                path: self.path.clone(),
                reason: format!(
                    "the output shape {:?} is not fixed for input {shape:?}",
                    fact.shape
                ),
            })
    }

    /// The optimised plan for `shape` (NCHW), built now if needed.
    pub fn plan(&self, shape: [usize; 4]) -> Result<Plan, InferError> {
        // Held while building, so two workers never optimise the same shape twice.
        let mut plans = self.plans.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(plan) = plans.get(&shape) {
            return Ok(plan.clone());
        }
        let started = Instant::now();
        let plan = (*self.proto)
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| load_error(&self.path, e))?;
        tracing::debug!(
            "optimised the model for input {shape:?} in {} ms",
            started.elapsed().as_millis()
        );
        if plans.len() >= MAX_PLANS {
            let victim = *plans.keys().next().expect("cache is not empty");
            plans.remove(&victim);
        }
        plans.insert(shape, plan.clone());
        Ok(plan)
    }

    /// A new engine (its own run states) over the shared plans.
    pub fn engine(&self) -> Result<TractEngine, InferError> {
        Ok(TractEngine {
            model: self.clone(),
            states: HashMap::new(),
        })
    }
}

fn load_error(path: &Path, e: TractError) -> InferError {
    InferError::Load {
        path: path.to_path_buf(),
        reason: format!("{e:#}").replace('\n', " "),
    }
}

/// One worker's engine: run states over the shared plans.
pub struct TractEngine {
    model: TractModel,
    states: HashMap<[usize; 4], TypedSimpleState>,
}

impl TractEngine {
    fn state(&mut self, shape: [usize; 4]) -> Result<&mut TypedSimpleState, InferError> {
        if !self.states.contains_key(&shape) {
            let plan = self.model.plan(shape)?;
            let state = plan.spawn().map_err(|e| InferError::Run {
                shape,
                reason: e.to_string(),
            })?;
            if self.states.len() >= MAX_PLANS {
                let victim = *self.states.keys().next().expect("not empty");
                self.states.remove(&victim);
            }
            self.states.insert(shape, state);
        }
        Ok(self.states.get_mut(&shape).expect("inserted above"))
    }
}

impl Engine for TractEngine {
    fn input_spec(&self) -> &InputSpec {
        &self.model.spec
    }

    fn run(&mut self, batch: TensorBatch) -> Result<Outputs, InferError> {
        let shape = batch.shape;
        let err = |e: TractError| InferError::Run {
            shape,
            reason: format!("{e:#}").replace('\n', " "),
        };
        let input = tract_ndarray::Array4::from_shape_vec(shape, batch.data).map_err(|e| {
            InferError::Run {
                shape,
                reason: e.to_string(),
            }
        })?;
        let out = self
            .state(shape)?
            .run(tvec!(Tensor::from(input).into()))
            .map_err(err)?;
        let first = out.into_iter().next().ok_or_else(|| InferError::Run {
            shape,
            reason: "the model produced no output".into(),
        })?;
        let tensor = first.into_tensor();
        let shape_out = tensor.shape().to_vec();
        let data = tensor
            .into_plain_array::<f32>()
            .map_err(err)?
            .into_raw_vec_and_offset()
            .0;
        Ok(Outputs {
            shape: shape_out,
            data,
        })
    }
}

/// Switches tract's matrix products to a rayon pool of `threads` threads for
/// the whole process. Used when frames are not run in parallel.
pub fn use_multithreaded_matmul(threads: usize) {
    tract_linalg::multithread::set_default_executor(
        tract_linalg::multithread::Executor::multithread(threads),
    );
}
