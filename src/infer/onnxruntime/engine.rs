//! The ONNX Runtime engine: the library opened once per process, one
//! session per worker (ONNX Runtime's run is not safe to share), and the
//! same tensors in and out as tract's.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use super::library::OrtError;
use crate::infer::{Engine, EngineFactory, InferError, InputSpec, Outputs, TensorBatch};

/// Label in messages and metrics.
pub const LABEL: &str = "onnxruntime-cpu";

/// ONNX Runtime, opened: its environment and where it came from.
#[derive(Clone)]
pub struct Runtime {
    env: Environment,
    /// The library file.
    pub library: PathBuf,
    /// Its version, as it reports it (`1.32.0`), or `unknown`.
    pub version: String,
}

/// The runtime opened first. A process can hold one ONNX Runtime library
/// and one environment, so later calls get this one, whatever path they ask
/// for; a failed open is not kept, so a corrected path can be tried.
static OPENED: Mutex<Option<Runtime>> = Mutex::new(None);

/// Opens the library at `library` (once per process).
pub fn open(library: &Path) -> Result<Runtime, OrtError> {
    let mut opened = OPENED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = opened.as_ref() {
        return Ok(rt.clone());
    }
    // Opened here first for the loader's own reason when it fails (`ort`
    // reports only "dlopen failed"); `ort` then opens the same file again.
    // SAFETY: ONNX Runtime's initialisers only set up its own state.
    let refused = |e: &dyn std::fmt::Display| OrtError::Open {
        library: library.to_path_buf(),
        reason: crate::base::text::one_line(&e.to_string()),
    };
    let _probe = unsafe { libloading::Library::new(library) }.map_err(|e| refused(&e))?;
    let builder = ort::init_from(library).map_err(|e| refused(&e))?;
    let env = builder
        .with_name("edgewatch")
        .with_telemetry(false)
        .build()
        .map_err(|e| OrtError::Start {
            library: library.to_path_buf(),
            reason: e.to_string(),
        })?;
    let rt = Runtime {
        env,
        library: library.to_path_buf(),
        version: version_of(library),
    };
    *opened = Some(rt.clone());
    Ok(rt)
}

/// The library's own version string (`1.32.0`): its build string names a
/// git branch, which release wheels leave at `HEAD`.
fn version_of(library: &Path) -> String {
    // SAFETY: `ort` has just opened this file and found `OrtGetApiBase` in
    // it; opening it again only raises its reference count. The string
    // returned is static in the library, which stays loaded for the process.
    unsafe {
        let Ok(lib) = libloading::Library::new(library) else {
            return "unknown".into();
        };
        let Ok(get) =
            lib.get::<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase>(b"OrtGetApiBase")
        else {
            return "unknown".into();
        };
        let base = get();
        if base.is_null() {
            return "unknown".into();
        }
        let v = ((*base).GetVersionString)();
        if v.is_null() {
            return "unknown".into();
        }
        std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned()
    }
}

/// A model for ONNX Runtime: its bytes, read once, and what it accepts.
#[derive(Clone)]
pub struct OrtModel {
    runtime: Runtime,
    bytes: Arc<[u8]>,
    spec: InputSpec,
    threads: usize,
    path: PathBuf,
    /// The session built to check the model, handed to the first engine.
    first: Arc<Mutex<Option<Session>>>,
}

impl OrtModel {
    /// Reads `path` and checks that ONNX Runtime takes it by building one
    /// session. `spec` is what the model accepts (read by tract from the same
    /// file, so both backends agree); `threads` is each session's share of
    /// the cores.
    pub fn load(
        runtime: Runtime,
        path: &Path,
        spec: InputSpec,
        threads: usize,
    ) -> Result<OrtModel, InferError> {
        let bytes = std::fs::read(path).map_err(|e| InferError::Load {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let model = OrtModel {
            runtime,
            bytes: bytes.into(),
            spec,
            threads: threads.max(1),
            path: path.to_path_buf(),
            first: Arc::new(Mutex::new(None)),
        };
        let first = model.session()?;
        *model.first.lock().unwrap_or_else(|p| p.into_inner()) = Some(first);
        Ok(model)
    }

    /// The runtime it runs on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn session(&self) -> Result<Session, InferError> {
        let err = |e: String| InferError::Load {
            path: self.path.clone(),
            reason: format!("ONNX Runtime {}: {e}", self.runtime.version),
        };
        let built = |e: ort::Error<ort::session::builder::SessionBuilder>| err(e.to_string());
        let b = Session::builder(&self.runtime.env).map_err(|e| err(e.to_string()))?;
        // The arena keeps activations between runs: without it every large
        // tensor is a fresh mmap (budget.rs returns large buffers to the
        // system) and runs took twice as long here. Its size is in the
        // memory plan (budget.rs, ORT_*).
        let b = b
            .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(true).build()])
            .map_err(built)?;
        let b = b.with_intra_threads(self.threads).map_err(built)?;
        let b = b.with_inter_threads(1).map_err(built)?;
        // A memory pattern is planned per input shape and held beside the
        // arena: 75 MiB more at 1080p, no faster, measured here.
        let b = b.with_memory_pattern(false).map_err(built)?;
        let mut b = b
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(built)?;
        b.commit_from_memory(&self.bytes)
            .map_err(|e| err(crate::base::text::one_line(&e.to_string())))
    }
}

impl EngineFactory for OrtModel {
    fn engine(&self) -> Result<Box<dyn Engine>, InferError> {
        let first = self.first.lock().unwrap_or_else(|p| p.into_inner()).take();
        Ok(Box::new(OrtEngine {
            session: match first {
                Some(s) => s,
                None => self.session()?,
            },
            spec: self.spec.clone(),
        }))
    }

    fn label(&self) -> &'static str {
        LABEL
    }
}

/// One worker's session.
pub struct OrtEngine {
    session: Session,
    spec: InputSpec,
}

impl Engine for OrtEngine {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn run(&mut self, batch: TensorBatch) -> Result<Outputs, InferError> {
        let shape = batch.shape;
        let err = |e: ort::Error| InferError::Run {
            shape,
            reason: crate::base::text::one_line(&e.to_string()),
        };
        let input = Tensor::from_array((shape, batch.data)).map_err(err)?;
        let outputs = self.session.run(ort::inputs![input]).map_err(err)?;
        if outputs.len() == 0 {
            return Err(InferError::Run {
                shape,
                reason: "the model produced no output".into(),
            });
        }
        let (dims, data) = outputs[0].try_extract_tensor::<f32>().map_err(err)?;
        Ok(Outputs {
            shape: dims.iter().map(|&d| d.max(0) as usize).collect(),
            data: data.to_vec(),
        })
    }
}
