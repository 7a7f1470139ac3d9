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
use tract_onnx::tract_hir::infer::{DimFact, Factoid, ShapeFactoid};

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
        let declared = declared_dims(&model);
        // Exports such as Ultralytics' are fixed at one H×W; DB models are
        // dynamic. A symbolic batch says nothing about H×W, so each dim is
        // read on its own.
        let fixed_hw = match declared {
            Some([_, _, Some(h), Some(w)]) => Some((h, w)),
            _ => None,
        };
        let max_batch = match declared {
            Some([Some(n), ..]) => n.max(1),
            _ => 8,
        };
        Ok(TractModel {
            proto: Arc::new(model),
            plans: Arc::new(Mutex::new(HashMap::new())),
            spec: InputSpec {
                name,
                fixed_hw,
                max_batch,
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
        let plan = bind(&self.proto, shape)
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

    /// Drops every optimised plan (engines keep the ones they hold).
    pub fn forget_plans(&self) {
        self.plans.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A new engine (its own run states) over the shared plans.
    pub fn engine(&self) -> Result<TractEngine, InferError> {
        Ok(TractEngine {
            model: self.clone(),
            states: HashMap::new(),
        })
    }
}

/// The first input's declared NCHW dims: `Some(n)` where the file fixes
/// one, `None` where it is symbolic (`batch`, `DynamicDimension.0`) or unset.
fn declared_dims(model: &InferenceModel) -> Option<[Option<usize>; 4]> {
    let fact = model.input_fact(0).ok()?;
    let dims: Vec<Option<usize>> = fact
        .shape
        .dims()
        .map(|d| d.concretize().and_then(|d| d.as_i64()).map(|n| n as usize))
        .collect();
    dims.try_into().ok()
}

/// `proto` with its input fixed at `shape` (NCHW).
///
/// Exporters (PyTorch, Paddle, Ultralytics with `dynamic=True`) declare a
/// symbolic batch, and write `value_info` with that symbol for tensors inside
/// the graph. Fixing only the input leaves tract to unify `batch` with `1` in
/// those facts, which it refuses. So every symbol the input declares takes
/// its value from `shape` in every fact the file states, before analysis;
/// a dim still symbolic after that (an exporter's `anchors`, Paddle's
/// `DynamicDimension.3` for an inner map) is a hint tract cannot check
/// against the fixed input, and is forgotten: analysis works it out.
fn bind(proto: &InferenceModel, shape: [usize; 4]) -> TractResult<InferenceModel> {
    let mut model = proto.clone();
    let mut values = SymbolValues::default();
    if let Ok(fact) = model.input_fact(0) {
        for (dim, value) in fact.shape.dims().zip(shape) {
            if let Some(TDim::Sym(symbol)) = dim.concretize() {
                values.set(&symbol, value as i64);
            }
        }
    }
    let inputs = model.input_outlets()?.to_vec();
    for node in 0..model.nodes().len() {
        for slot in 0..model.nodes()[node].outputs.len() {
            let outlet = OutletId::new(node, slot);
            let fact = &model.nodes()[node].outputs[slot].fact;
            let symbolic = |d: &DimFact| d.concretize().is_some_and(|d| !d.symbols().is_empty());
            if inputs.contains(&outlet) || !fact.shape.dims().any(symbolic) {
                continue;
            }
            let dims: TVec<DimFact> = fact
                .shape
                .dims()
                .map(|d| match d.concretize().map(|d| d.eval(&values)) {
                    Some(d) if d.symbols().is_empty() => DimFact::from(d),
                    _ => DimFact::default(),
                })
                .collect();
            let mut fact = fact.clone();
            fact.shape = if fact.shape.is_open() {
                ShapeFactoid::open(dims)
            } else {
                ShapeFactoid::closed(dims)
            };
            model.set_outlet_fact(outlet, fact)?;
        }
    }
    model.with_input_fact(0, f32::fact(shape).into())
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
