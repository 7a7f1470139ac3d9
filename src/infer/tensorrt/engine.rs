//! A deserialised TensorRT engine behind the `Engine` trait: one execution
//! context, one CUDA stream, buffers allocated once at load.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use super::ffi;
use super::libs::Libraries;
use crate::infer::{Engine, EngineFactory, InferError, InputSpec, Outputs, TensorBatch};

/// What a loaded engine reports about itself.
#[derive(Debug, Clone)]
pub struct EngineIo {
    /// Input tensor name.
    pub input: String,
    /// Fixed input `(h, w)`, if the engine has no dynamic H×W.
    pub fixed_hw: Option<(usize, usize)>,
    /// Largest batch the profile admits.
    pub max_batch: usize,
    /// GPU activation memory of the context.
    pub device_memory_bytes: u64,
    /// Input and output buffers.
    pub buffer_bytes: u64,
}

/// Why an engine did not load, and whether the engine file is to blame.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// The shim's one-line reason.
    pub reason: String,
    /// The plan itself is bad (it did not deserialise, or its tensors are
    /// not what edgewatch feeds): throw it away and rebuild. Anything else
    /// (the device, a failed allocation, a driver) keeps the file, which
    /// took minutes to build.
    pub bad_file: bool,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// One worker's TensorRT engine.
pub struct TrtEngine {
    libs: Arc<Libraries>,
    handle: *mut c_void,
    spec: InputSpec,
    out_capacity: usize,
}

// The handle is used by one thread at a time (the worker owning it); the
// shim keeps no thread-local state.
unsafe impl Send for TrtEngine {}

impl TrtEngine {
    /// Deserialises `plan` and sizes its buffers for inputs up to `max_dims`.
    pub fn load(
        libs: Arc<Libraries>,
        plan: &[u8],
        device: u32,
        mapped: bool,
        max_dims: [u32; 4],
    ) -> Result<(TrtEngine, EngineIo), LoadError> {
        let params = ffi::LoadParams {
            device: device as i32,
            mapped: i32::from(mapped),
            max_dims: max_dims.map(|d| d as i32),
        };
        // SAFETY: Io is plain data; the shim fills it.
        let mut io: ffi::Io = unsafe { std::mem::zeroed() };
        let mut err = [0 as c_char; 1024];
        // SAFETY: `libs.api` lives as long as this engine (the Arc is kept),
        // `plan` outlives the call (TensorRT copies what it keeps).
        let handle = unsafe {
            ffi::ew_trt_load(
                &libs.api,
                plan.as_ptr().cast(),
                plan.len() as u64,
                &params,
                &mut io,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if handle.is_null() {
            return Err(LoadError {
                reason: ffi::text(&err),
                bad_file: io.failed_step == ffi::STEP_DESERIALISE,
            });
        }
        let tensors = &io.tensors[..io.count.clamp(0, ffi::MAX_TENSORS as i32) as usize];
        let input = tensors.iter().find(|t| t.is_input != 0);
        let out_capacity = tensors
            .iter()
            .find(|t| t.is_input == 0)
            .map(|t| t.capacity as usize)
            .unwrap_or(0);
        let (name, fixed_hw, max_batch) = match input {
            Some(t) => {
                let fixed = (t.dims[2] > 0 && t.dims[3] > 0)
                    .then_some((t.dims[2] as usize, t.dims[3] as usize));
                (ffi::text(&t.name), fixed, t.max_dims[0].max(1) as usize)
            }
            None => (String::new(), None, 1),
        };
        let engine = TrtEngine {
            libs,
            handle,
            spec: InputSpec {
                name: name.clone(),
                fixed_hw,
                max_batch,
            },
            out_capacity,
        };
        let info = EngineIo {
            input: name,
            fixed_hw,
            max_batch,
            device_memory_bytes: io.device_memory_bytes,
            buffer_bytes: io.buffer_bytes,
        };
        Ok((engine, info))
    }
}

impl Drop for TrtEngine {
    fn drop(&mut self) {
        // SAFETY: the handle came from ew_trt_load and is freed once; the
        // libraries are still open (self.libs drops after this).
        unsafe { ffi::ew_trt_unload(self.handle) };
        let _ = &self.libs;
    }
}

impl Engine for TrtEngine {
    fn input_spec(&self) -> &InputSpec {
        &self.spec
    }

    fn run(&mut self, batch: TensorBatch) -> Result<Outputs, InferError> {
        let shape = batch.shape;
        let dims = shape.map(|d| d as i32);
        let mut data = vec![0f32; self.out_capacity];
        let mut out_dims = [0i32; ffi::MAX_DIMS];
        let mut rank = 0i32;
        let mut err = [0 as c_char; 1024];
        // SAFETY: input has n*c*h*w values (TensorBatch's invariant), the
        // output buffer holds out_capacity values and the shim checks both.
        let rc = unsafe {
            ffi::ew_trt_run(
                self.handle,
                batch.data.as_ptr(),
                dims.as_ptr(),
                data.as_mut_ptr(),
                data.len() as u64,
                out_dims.as_mut_ptr(),
                &mut rank,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        if rc != 0 {
            return Err(InferError::Run {
                shape,
                reason: ffi::text(&err),
            });
        }
        let shape_out: Vec<usize> = out_dims[..rank.clamp(0, 8) as usize]
            .iter()
            .map(|d| *d as usize)
            .collect();
        data.truncate(shape_out.iter().product());
        Ok(Outputs {
            shape: shape_out,
            data,
        })
    }
}

/// Makes one engine per worker from a cached plan.
pub struct TrtFactory {
    /// The libraries.
    pub libs: Arc<Libraries>,
    /// The serialized engine.
    pub plan: Arc<Vec<u8>>,
    /// CUDA device.
    pub device: u32,
    /// Zero-copy buffers.
    pub mapped: bool,
    /// Largest input.
    pub max_dims: [u32; 4],
}

impl TrtFactory {
    fn load(&self) -> Result<(TrtEngine, EngineIo), LoadError> {
        TrtEngine::load(
            self.libs.clone(),
            &self.plan,
            self.device,
            self.mapped,
            self.max_dims,
        )
    }

    /// Loads one engine to prove the plan works here, saying whether a
    /// failure is the file's.
    pub fn try_load(&self) -> Result<EngineIo, LoadError> {
        self.load().map(|(_, io)| io)
    }
}

impl EngineFactory for TrtFactory {
    fn engine(&self) -> Result<Box<dyn Engine>, InferError> {
        self.load()
            .map(|(e, _)| Box::new(e) as Box<dyn Engine>)
            .map_err(|e| InferError::Run {
                shape: self.max_dims.map(|d| d as usize),
                reason: e.reason,
            })
    }

    fn label(&self) -> &'static str {
        crate::infer::Backend::Tensorrt.label()
    }
}
