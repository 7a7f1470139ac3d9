//! The shim's C surface (`shim/ew_trt.h`), mirrored. The data types are
//! always compiled, so the library loader and its tests build without
//! TensorRT; the shim's functions exist only with the `tensorrt` feature.

use std::ffi::{c_char, c_int, c_uint, c_void};

/// `EW_TRT_ABI`: the struct layouts below. Checked against the shim at load.
pub const ABI: i32 = 2;
/// `EW_TRT_MAX_DIMS`.
pub const MAX_DIMS: usize = 8;
/// `EW_TRT_MAX_TENSORS`.
pub const MAX_TENSORS: usize = 8;

/// `ew_trt_api`: entry points found by dlsym.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct Api {
    pub create_builder: unsafe extern "C" fn(*mut c_void, i32) -> *mut c_void,
    pub create_runtime: unsafe extern "C" fn(*mut c_void, i32) -> *mut c_void,
    pub create_onnx_parser: unsafe extern "C" fn(*mut c_void, *mut c_void, i32) -> *mut c_void,
    pub infer_lib_version: unsafe extern "C" fn() -> i32,
    pub set_device: unsafe extern "C" fn(c_int) -> c_int,
    pub set_device_flags: unsafe extern "C" fn(c_uint) -> c_int,
    pub device_get_attribute: unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int,
    pub get_device_properties: unsafe extern "C" fn(*mut c_void, c_int) -> c_int,
    pub mem_get_info: unsafe extern "C" fn(*mut usize, *mut usize) -> c_int,
    pub malloc_device: unsafe extern "C" fn(*mut *mut c_void, usize) -> c_int,
    pub free_device: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub host_alloc: unsafe extern "C" fn(*mut *mut c_void, usize, c_uint) -> c_int,
    pub free_host: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub host_get_device_pointer:
        unsafe extern "C" fn(*mut *mut c_void, *mut c_void, c_uint) -> c_int,
    pub stream_create: unsafe extern "C" fn(*mut *mut c_void) -> c_int,
    pub stream_destroy: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub stream_synchronize: unsafe extern "C" fn(*mut c_void) -> c_int,
    pub memcpy_async:
        unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int, *mut c_void) -> c_int,
    pub get_error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    pub runtime_get_version: unsafe extern "C" fn(*mut c_int) -> c_int,
    pub log: Option<unsafe extern "C" fn(*mut c_void, i32, *const c_char)>,
    pub log_user: *mut c_void,
    pub get_last_error: unsafe extern "C" fn() -> c_int,
    pub init_plugins: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int>,
}

/// `ew_trt_device`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct Device {
    pub name: [c_char; 256],
    pub cc_major: i32,
    pub cc_minor: i32,
    pub integrated: i32,
    pub can_map_host_memory: i32,
    pub free_bytes: u64,
    pub total_bytes: u64,
    pub cuda_runtime_version: i32,
    pub trt_version: i32,
}

/// `ew_trt_build_params`.
#[repr(C)]
#[allow(missing_docs)]
pub struct BuildParams {
    pub onnx_path: *const c_char,
    pub device: i32,
    pub fp16: i32,
    pub workspace_bytes: u64,
    pub restrict_tactics: i32,
    pub min_dims: [i32; 4],
    pub opt_dims: [i32; 4],
    pub max_dims: [i32; 4],
    pub timing_cache: *const c_void,
    pub timing_cache_len: u64,
}

/// `ew_trt_progress`: return non-zero to cancel.
pub type Progress = unsafe extern "C" fn(*mut c_void, *const c_char, i32, i32) -> i32;

/// `ew_trt_blob`.
#[repr(C)]
#[allow(missing_docs)]
pub struct Blob {
    pub data: *const c_void,
    pub len: u64,
    pub owner: *mut c_void,
}

/// `ew_trt_load_params`.
#[repr(C)]
#[allow(missing_docs)]
pub struct LoadParams {
    pub device: i32,
    pub mapped: i32,
    pub max_dims: [i32; 4],
}

/// `ew_trt_tensor`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct Tensor {
    pub name: [c_char; 128],
    pub is_input: i32,
    pub rank: i32,
    pub dims: [i32; MAX_DIMS],
    pub min_dims: [i32; MAX_DIMS],
    pub max_dims: [i32; MAX_DIMS],
    pub capacity: u64,
}

/// `ew_trt_io`.
#[repr(C)]
#[derive(Clone, Copy)]
#[allow(missing_docs)]
pub struct Io {
    pub count: i32,
    pub tensors: [Tensor; MAX_TENSORS],
    pub device_memory_bytes: u64,
    pub buffer_bytes: u64,
    pub failed_step: i32,
}

/// `EW_TRT_STEP_DESERIALISE`: the engine file itself is bad. Every other
/// step that fails (device, runtime, context, buffers) keeps the file.
pub const STEP_DESERIALISE: i32 = 3;

#[cfg(feature = "tensorrt")]
extern "C" {
    pub fn ew_trt_header_version() -> i32;
    pub fn ew_trt_abi() -> i32;
    pub fn ew_trt_device_info(
        api: *const Api,
        device: i32,
        out: *mut Device,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub fn ew_trt_build(
        api: *const Api,
        params: *const BuildParams,
        progress: Option<Progress>,
        user: *mut c_void,
        plan: *mut Blob,
        timing_cache: *mut Blob,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub fn ew_trt_blob_free(blob: *mut Blob);
    pub fn ew_trt_load(
        api: *const Api,
        plan: *const c_void,
        len: u64,
        params: *const LoadParams,
        io: *mut Io,
        err: *mut c_char,
        errlen: usize,
    ) -> *mut c_void;
    pub fn ew_trt_run(
        engine: *mut c_void,
        input: *const f32,
        dims: *const i32,
        output: *mut f32,
        output_capacity: u64,
        out_dims: *mut i32,
        out_rank: *mut i32,
        err: *mut c_char,
        errlen: usize,
    ) -> c_int;
    pub fn ew_trt_unload(engine: *mut c_void);
}

/// A C string field as Rust text.
pub fn text(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
