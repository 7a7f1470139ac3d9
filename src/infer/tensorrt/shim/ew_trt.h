/* edgewatch's TensorRT shim: the C surface the Rust side calls.
 *
 * The shim never links against TensorRT or CUDA. The daemon opens
 * libnvinfer, libnvonnxparser and libcudart itself (dlopen) and hands their
 * entry points over in `ew_trt_api`, so one binary starts on a machine where
 * they are missing or of another major version, says which library it could
 * not find, and keeps serving on the CPU.
 *
 * Every call that can fail returns 0 on success, or -1 with a one-line reason
 * written into `err` (NUL-terminated, truncated to `errlen`). */
#ifndef EW_TRT_H
#define EW_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when any struct below changes; checked by the Rust side. */
#define EW_TRT_ABI 2

/* Most dimensions a tensor may have (TensorRT's Dims::MAX_DIMS). */
#define EW_TRT_MAX_DIMS 8
/* Most input + output tensors an engine may have. */
#define EW_TRT_MAX_TENSORS 8

/* Entry points found by dlsym. CUDA errors are `cudaError_t` as int; streams
 * are `cudaStream_t` as void*. */
typedef struct ew_trt_api {
    void* (*create_builder)(void* logger, int32_t version);
    void* (*create_runtime)(void* logger, int32_t version);
    void* (*create_onnx_parser)(void* network, void* logger, int32_t version);
    int32_t (*infer_lib_version)(void);
    int (*set_device)(int device);
    int (*set_device_flags)(unsigned int flags);
    int (*device_get_attribute)(int* value, int attr, int device);
    /* cudaGetDeviceProperties: only `name`, the struct's first field, is read,
     * from a buffer far larger than any CUDA release's struct. */
    int (*get_device_properties)(void* prop, int device);
    int (*mem_get_info)(size_t* free_bytes, size_t* total_bytes);
    int (*malloc_device)(void** ptr, size_t bytes);
    int (*free_device)(void* ptr);
    int (*host_alloc)(void** ptr, size_t bytes, unsigned int flags);
    int (*free_host)(void* ptr);
    int (*host_get_device_pointer)(void** device, void* host, unsigned int flags);
    int (*stream_create)(void** stream);
    int (*stream_destroy)(void* stream);
    int (*stream_synchronize)(void* stream);
    int (*memcpy_async)(void* dst, const void* src, size_t bytes, int kind, void* stream);
    const char* (*get_error_string)(int error);
    int (*runtime_get_version)(int* version);
    /* TensorRT's log lines, into the daemon's log. Severity is
     * ILogger::Severity: 0 internal error, 1 error, 2 warning, 3 info, 4 verbose. */
    void (*log)(void* user, int32_t severity, const char* message);
    void* log_user;
    /* cudaGetLastError: clears the error a tolerated call left behind. */
    int (*get_last_error)(void);
    /* initLibNvInferPlugins from libnvinfer_plugin, or NULL where that
     * library is not installed (models with plugin layers then fail to
     * parse, naming the layer). */
    int (*init_plugins)(void* logger, const char* plugin_namespace);
} ew_trt_api;

/* The GPU and the libraries, for the engine cache key. */
typedef struct ew_trt_device {
    char name[256];
    int32_t cc_major;
    int32_t cc_minor;
    int32_t integrated;          /* shares memory with the CPU (every Jetson) */
    int32_t can_map_host_memory; /* zero-copy mapped host memory works */
    uint64_t free_bytes;
    uint64_t total_bytes;
    int32_t cuda_runtime_version; /* e.g. 10020 */
    int32_t trt_version;          /* getInferLibVersion() */
} ew_trt_device;

typedef struct ew_trt_build_params {
    const char* onnx_path;
    int32_t device;
    /* 1: weakly typed FP16 layers allowed (FP32 fallback). TensorRT 11
     * dropped weak typing; there the ONNX file's own types decide. */
    int32_t fp16;
    uint64_t workspace_bytes;
    /* 1: no cuBLAS/cuDNN tactics, so those libraries (about 400 MB of CPU
     * memory on a Nano) are never loaded. */
    int32_t restrict_tactics;
    /* The optimisation profile of a dynamic NCHW input. Ignored for fixed inputs. */
    int32_t min_dims[4];
    int32_t opt_dims[4];
    int32_t max_dims[4];
    /* A timing cache from an earlier build, or NULL. */
    const void* timing_cache;
    uint64_t timing_cache_len;
} ew_trt_build_params;

/* Build progress. TensorRT 10+ reports phases and steps; before it, the
 * shim reports only the start and end of each stage (steps = -1). Return 0
 * to go on, non-zero to cancel the build. */
typedef int32_t (*ew_trt_progress)(void* user, const char* phase, int32_t step, int32_t steps);

/* Bytes owned by the shim until ew_trt_blob_free. */
typedef struct ew_trt_blob {
    const void* data;
    uint64_t len;
    void* owner;
} ew_trt_blob;

typedef struct ew_trt_load_params {
    int32_t device;
    /* 1: inputs and outputs live in mapped host memory the GPU reads and
     * writes in place (integrated GPUs); 0: pinned host buffers and copies. */
    int32_t mapped;
    /* The largest NCHW input that will be run; buffers are sized for it. */
    int32_t max_dims[4];
} ew_trt_load_params;

/* One input or output tensor. Dynamic dimensions are -1 in `dims`. */
typedef struct ew_trt_tensor {
    char name[128];
    int32_t is_input;
    int32_t rank;
    int32_t dims[EW_TRT_MAX_DIMS];
    /* Inputs: the optimisation profile's bounds (equal to dims when fixed). */
    int32_t min_dims[EW_TRT_MAX_DIMS];
    int32_t max_dims[EW_TRT_MAX_DIMS];
    /* Elements the buffers hold. */
    uint64_t capacity;
} ew_trt_tensor;

/* Which step of ew_trt_load failed: only EW_TRT_STEP_DESERIALISE means the
 * engine file itself is bad (and may be thrown away); the others are the
 * device, memory or a driver, and the file is kept. */
#define EW_TRT_STEP_NONE 0
#define EW_TRT_STEP_DEVICE 1
#define EW_TRT_STEP_RUNTIME 2
#define EW_TRT_STEP_DESERIALISE 3
#define EW_TRT_STEP_CONTEXT 4
#define EW_TRT_STEP_BUFFERS 5

typedef struct ew_trt_io {
    int32_t count;
    ew_trt_tensor tensors[EW_TRT_MAX_TENSORS];
    /* Activation memory the execution context holds on the GPU. */
    uint64_t device_memory_bytes;
    /* Input and output buffers, on the GPU or mapped. */
    uint64_t buffer_bytes;
    /* EW_TRT_STEP_*: where a failed load stopped. */
    int32_t failed_step;
} ew_trt_io;

/* NV_TENSORRT_MAJOR*10000 + MINOR*100 + PATCH of the headers the shim was
 * compiled against. */
int32_t ew_trt_header_version(void);
int32_t ew_trt_abi(void);

int ew_trt_device_info(const ew_trt_api* api, int32_t device, ew_trt_device* out,
                       char* err, size_t errlen);

/* Parses the ONNX file and builds a serialized engine into `plan`, and the
 * updated timing cache into `timing_cache` (len 0 when there is none). */
int ew_trt_build(const ew_trt_api* api, const ew_trt_build_params* params,
                 ew_trt_progress progress, void* progress_user, ew_trt_blob* plan,
                 ew_trt_blob* timing_cache, char* err, size_t errlen);
void ew_trt_blob_free(ew_trt_blob* blob);

/* Deserialises a plan, creates one execution context on one CUDA stream and
 * allocates every buffer once. Returns NULL on failure. */
void* ew_trt_load(const ew_trt_api* api, const void* plan, uint64_t len,
                  const ew_trt_load_params* params, ew_trt_io* io, char* err, size_t errlen);

/* Runs one NCHW float32 input; writes the first output (float32) into
 * `output` and its shape into `out_dims`/`out_rank`. */
int ew_trt_run(void* engine, const float* input, const int32_t dims[4], float* output,
               uint64_t output_capacity, int32_t out_dims[EW_TRT_MAX_DIMS], int32_t* out_rank,
               char* err, size_t errlen);
void ew_trt_unload(void* engine);

#ifdef __cplusplus
}
#endif

#endif
