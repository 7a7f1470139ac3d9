// edgewatch's TensorRT shim: builds, loads and runs engines behind the C
// surface of ew_trt.h. It compiles against TensorRT 8.2 (JetPack 4.6) through
// 10.x and 11; version differences are decided here, at compile time, with
// NV_TENSORRT_MAJOR/MINOR:
// - before 8.4: setMaxWorkspaceSize; from 8.4: setMemoryPoolLimit;
// - before 8.5: bindings, setBindingDimensions, enqueueV2; from 8.5: named
//   tensors, setInputShape, setTensorAddress, enqueueV3;
// - from 10: an IProgressMonitor reports build phases; explicit batch is the
//   only mode;
// - from 11: weak typing (BuilderFlag::kFP16) and the cuBLAS/cuDNN tactic
//   sources are gone.
//
// It never calls a TensorRT or CUDA function by name: every entry point comes
// from ew_trt_api (dlsym on the Rust side), so nothing here needs linking.
// No C++ exception may cross into Rust: each entry point catches everything.

#include "ew_trt.h"

#include <NvInfer.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#define EW_TRT_AT_LEAST(major, minor) \
    (NV_TENSORRT_MAJOR > (major) || (NV_TENSORRT_MAJOR == (major) && NV_TENSORRT_MINOR >= (minor)))

// The one property read from cudaGetDeviceProperties; every CUDA release
// keeps it first, which is what makes the oversized buffer safe.
static_assert(offsetof(cudaDeviceProp, name) == 0, "cudaDeviceProp::name must be the first field");

using namespace nvinfer1;

namespace {

void set_err(char* err, size_t errlen, const std::string& msg) noexcept {
    if (err != nullptr && errlen > 0) {
        std::snprintf(err, errlen, "%s", msg.c_str());
    }
}

template <typename T>
struct Destroy {
    void operator()(T* p) const noexcept { delete p; }
};
template <typename T>
using Owned = std::unique_ptr<T, Destroy<T>>;

// Forwards TensorRT's log into the daemon's and keeps the last error, which
// is what the failing call's message then quotes. One for the process:
// TensorRT keeps the first logger it is given for every later builder and
// runtime, and from 10 on the builder logs from its own threads, so the
// last error is guarded.
class Logger : public ILogger {
public:
    static Logger& instance() noexcept {
        static Logger logger;
        return logger;
    }

    // The daemon's log function; every call hands the same one over.
    void attach(const ew_trt_api* api) noexcept {
        sink_.store(api->log);
        user_.store(api->log_user);
    }

    void log(Severity severity, char const* msg) noexcept override {
        auto sink = sink_.load();
        if (sink != nullptr) {
            sink(user_.load(), static_cast<int32_t>(severity), msg);
        }
        if (severity <= Severity::kERROR) {
            try {
                std::lock_guard<std::mutex> lock(mu_);
                last_error_ = msg;
            } catch (...) {
            }
        }
    }

    // Called as each entry point starts, so an old error is not quoted.
    void clear() noexcept {
        try {
            std::lock_guard<std::mutex> lock(mu_);
            last_error_.clear();
        } catch (...) {
        }
    }

    std::string last_error(const char* fallback) const {
        std::lock_guard<std::mutex> lock(mu_);
        return last_error_.empty() ? std::string(fallback) : last_error_;
    }

private:
    Logger() = default;
    std::atomic<void (*)(void*, int32_t, const char*)> sink_{nullptr};
    std::atomic<void*> user_{nullptr};
    mutable std::mutex mu_;
    std::string last_error_;
};

// The process's logger, pointed at this call's log function, its last error
// cleared.
Logger& logger_for(const ew_trt_api* api) noexcept {
    Logger& logger = Logger::instance();
    logger.attach(api);
    logger.clear();
    return logger;
}

// TensorRT's standard plugins, registered once where libnvinfer_plugin is.
void init_plugins(const ew_trt_api* api, Logger& logger) noexcept {
    static std::once_flag once;
    if (api->init_plugins == nullptr) {
        return;
    }
    try {
        std::call_once(once, [&] {
            if (api->init_plugins(&logger, "") == 0) {
                logger.log(ILogger::Severity::kWARNING,
                           "initLibNvInferPlugins failed: models with plugin layers will not parse");
            }
        });
    } catch (...) {
    }
}

bool cuda_ok(const ew_trt_api* api, int rc, const char* what, char* err, size_t errlen) {
    if (rc == 0) {
        return true;
    }
    const char* text = api->get_error_string != nullptr ? api->get_error_string(rc) : nullptr;
    set_err(err, errlen,
            std::string(what) + " failed: CUDA error " + std::to_string(rc) + " (" +
                (text != nullptr ? text : "no description") + ")");
    return false;
}

// The device first, so flags go to its context: setting them before
// cudaSetDevice starts device 0's context when another device is wanted.
// Blocking sync: waiting for the GPU sleeps instead of spinning a core (a
// Nano has four). A context that already exists (the device query made it)
// keeps its flags: cudaErrorSetOnActiveProcess is harmless, and cleared so
// TensorRT's own checks do not see it. Mapped host memory needs no flag:
// runtime-API contexts on 64-bit systems (unified addressing) allow it.
bool select_device(const ew_trt_api* api, int32_t device, char* err, size_t errlen) {
    if (!cuda_ok(api, api->set_device(device), "cudaSetDevice", err, errlen)) {
        return false;
    }
    const int rc = api->set_device_flags(cudaDeviceScheduleBlockingSync);
    if (rc == cudaErrorSetOnActiveProcess) {
        api->get_last_error();
        return true;
    }
    return cuda_ok(api, rc, "cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync)", err, errlen);
}

std::string dims_text(const Dims& d) {
    std::string s;
    for (int32_t i = 0; i < d.nbDims; ++i) {
        s += (i ? "x" : "") + std::to_string(d.d[i]);
    }
    return s;
}

bool has_dynamic(const Dims& d) {
    for (int32_t i = 0; i < d.nbDims; ++i) {
        if (d.d[i] < 0) {
            return true;
        }
    }
    return false;
}

uint64_t volume(const Dims& d) {
    uint64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i) {
        v *= d.d[i] < 0 ? 0 : static_cast<uint64_t>(d.d[i]);
    }
    return v;
}

Dims4 nchw(const int32_t dims[4]) { return Dims4(dims[0], dims[1], dims[2], dims[3]); }

// A profile dimension: the model's own where it is fixed, the requested one
// where it is dynamic.
Dims4 profile_dims(const Dims& model, const int32_t wanted[4]) {
    Dims4 d = nchw(wanted);
    for (int32_t i = 0; i < 4; ++i) {
        if (model.d[i] >= 0) {
            d.d[i] = model.d[i];
        }
    }
    return d;
}

void copy_dims(const Dims& d, int32_t* out) {
    for (int32_t i = 0; i < EW_TRT_MAX_DIMS; ++i) {
        out[i] = i < d.nbDims ? static_cast<int32_t>(d.d[i]) : 0;
    }
}

#if NV_TENSORRT_MAJOR >= 10
// Build phases and steps, as TensorRT 10+ reports them.
class Progress : public IProgressMonitor {
public:
    Progress(ew_trt_progress cb, void* user) : cb_(cb), user_(user) {}

    void phaseStart(char const* phase, char const* /*parent*/, int32_t steps) noexcept override {
        try {
            steps_[phase] = steps;
        } catch (...) {
        }
        report(phase, 0, steps);
    }

    bool stepComplete(char const* phase, int32_t step) noexcept override {
        int32_t steps = -1;
        try {
            auto it = steps_.find(phase);
            steps = it == steps_.end() ? -1 : it->second;
        } catch (...) {
        }
        return report(phase, step + 1, steps);
    }

    void phaseFinish(char const* phase) noexcept override {
        int32_t steps = -1;
        try {
            auto it = steps_.find(phase);
            steps = it == steps_.end() ? -1 : it->second;
        } catch (...) {
        }
        report(phase, steps, steps);
    }

private:
    bool report(char const* phase, int32_t step, int32_t steps) noexcept {
        return cb_ == nullptr || cb_(user_, phase, step, steps) == 0;
    }

    ew_trt_progress cb_;
    void* user_;
    std::map<std::string, int32_t> steps_;
};
#endif

void allow_fp16(IBuilder& builder, IBuilderConfig& config, const ew_trt_api* api) {
#if NV_TENSORRT_MAJOR >= 11
    // TensorRT 11 builds strongly typed networks only: the ONNX file's own
    // types decide. An FP16 engine there comes from an FP16 ONNX export.
    (void)builder;
    (void)config;
    if (api->log != nullptr) {
        api->log(api->log_user, 2,
                 "TensorRT 11 has no weakly typed FP16: the engine keeps the ONNX file's types "
                 "(for an FP16 engine export the model in FP16 with float32 inputs and outputs, "
                 "e.g. onnxconverter-common's convert_float_to_float16(keep_io_types=True))");
    }
#else
    // Deprecated from 10.12 in favour of strongly typed networks, still the
    // way to get FP16 from an FP32 ONNX file until TensorRT 11 removes it.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    if (builder.platformHasFastFp16()) {
        config.setFlag(BuilderFlag::kFP16);
    } else if (api->log != nullptr) {
        api->log(api->log_user, 2, "this GPU has no fast FP16: building in FP32");
    }
#pragma GCC diagnostic pop
#endif
}

void restrict_tactics(IBuilderConfig& config) {
#if NV_TENSORRT_MAJOR >= 11
    (void)config;  // cuBLAS and cuDNN are no longer tactic sources.
#else
    // Deprecated in 10 (TensorRT's own kernels replace them); clearing them
    // is what keeps cuBLAS and cuDNN from being loaded on 8.x.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    TacticSources sources = config.getTacticSources();
    sources &= ~(1U << static_cast<uint32_t>(TacticSource::kCUBLAS));
    sources &= ~(1U << static_cast<uint32_t>(TacticSource::kCUBLAS_LT));
    sources &= ~(1U << static_cast<uint32_t>(TacticSource::kCUDNN));
#pragma GCC diagnostic pop
    config.setTacticSources(sources);
#endif
}

void set_workspace(IBuilderConfig& config, uint64_t bytes) {
#if EW_TRT_AT_LEAST(8, 4)
    config.setMemoryPoolLimit(MemoryPoolType::kWORKSPACE, static_cast<size_t>(bytes));
#else
    config.setMaxWorkspaceSize(static_cast<size_t>(bytes));
#endif
}

int32_t report(ew_trt_progress cb, void* user, const char* phase, int32_t step, int32_t steps) {
    return cb == nullptr ? 0 : cb(user, phase, step, steps);
}

int build(const ew_trt_api* api, const ew_trt_build_params* p, ew_trt_progress progress,
          void* user, ew_trt_blob* plan, ew_trt_blob* timing, char* err, size_t errlen) {
    std::memset(plan, 0, sizeof(*plan));
    std::memset(timing, 0, sizeof(*timing));
    Logger& logger = logger_for(api);
    if (!select_device(api, p->device, err, errlen)) {
        return -1;
    }
    init_plugins(api, logger);
    Owned<IBuilder> builder(
        static_cast<IBuilder*>(api->create_builder(&logger, NV_TENSORRT_VERSION)));
    if (!builder) {
        set_err(err, errlen, "createInferBuilder failed: " + logger.last_error("no reason given"));
        return -1;
    }
#if NV_TENSORRT_MAJOR >= 10
    const uint32_t flags = 0;  // explicit batch is the only mode
#else
    const uint32_t flags =
        1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
#endif
    Owned<INetworkDefinition> network(builder->createNetworkV2(flags));
    if (!network) {
        set_err(err, errlen, "createNetworkV2 failed: " + logger.last_error("no reason given"));
        return -1;
    }
    Owned<nvonnxparser::IParser> parser(static_cast<nvonnxparser::IParser*>(
        api->create_onnx_parser(network.get(), &logger, NV_ONNX_PARSER_VERSION)));
    if (!parser) {
        set_err(err, errlen, "createParser failed: " + logger.last_error("no reason given"));
        return -1;
    }
    if (report(progress, user, "parse ONNX", 0, 1) != 0) {
        set_err(err, errlen, "cancelled");
        return -1;
    }
    if (!parser->parseFromFile(p->onnx_path, static_cast<int>(ILogger::Severity::kWARNING))) {
        std::string why;
        for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
            why += (i ? "; " : "") + std::string(parser->getError(i)->desc());
        }
        set_err(err, errlen,
                std::string("cannot parse ") + p->onnx_path + ": " +
                    (why.empty() ? logger.last_error("no reason given") : why));
        return -1;
    }
    report(progress, user, "parse ONNX", 1, 1);
    if (network->getNbInputs() != 1) {
        set_err(err, errlen,
                "the model has " + std::to_string(network->getNbInputs()) +
                    " inputs; edgewatch runs single-input image models");
        return -1;
    }
    Owned<IBuilderConfig> config(builder->createBuilderConfig());
    if (!config) {
        set_err(err, errlen,
                "createBuilderConfig failed: " + logger.last_error("no reason given"));
        return -1;
    }
    set_workspace(*config, p->workspace_bytes);
    if (p->fp16) {
        allow_fp16(*builder, *config, api);
    }
    if (p->restrict_tactics) {
        restrict_tactics(*config);
    }
    ITensor* input = network->getInput(0);
    const Dims in = input->getDimensions();
    if (has_dynamic(in)) {
        if (in.nbDims != 4) {
            set_err(err, errlen,
                    "the model input " + std::string(input->getName()) + " is " + dims_text(in) +
                        "; edgewatch builds NCHW image models");
            return -1;
        }
        IOptimizationProfile* profile = builder->createOptimizationProfile();
        const char* name = input->getName();
        const bool ok =
            profile->setDimensions(name, OptProfileSelector::kMIN, profile_dims(in, p->min_dims)) &&
            profile->setDimensions(name, OptProfileSelector::kOPT, profile_dims(in, p->opt_dims)) &&
            profile->setDimensions(name, OptProfileSelector::kMAX, profile_dims(in, p->max_dims));
        if (!ok || config->addOptimizationProfile(profile) < 0) {
            set_err(err, errlen,
                    "the optimisation profile min " + dims_text(profile_dims(in, p->min_dims)) +
                        ", opt " + dims_text(profile_dims(in, p->opt_dims)) + ", max " +
                        dims_text(profile_dims(in, p->max_dims)) + " was refused: " +
                        logger.last_error("no reason given"));
            return -1;
        }
    }
    Owned<ITimingCache> cache(config->createTimingCache(
        p->timing_cache, p->timing_cache != nullptr ? p->timing_cache_len : 0));
    if (!cache && p->timing_cache != nullptr) {
        // A cache from another TensorRT or GPU: start a fresh one.
        logger.log(ILogger::Severity::kWARNING, "the stored timing cache was refused; starting anew");
        cache.reset(config->createTimingCache(nullptr, 0));
    }
    if (cache) {
        config->setTimingCache(*cache, false);
    }
#if NV_TENSORRT_MAJOR >= 10
    Progress monitor(progress, user);
    config->setProgressMonitor(&monitor);
#endif
    if (report(progress, user, "build engine", 0, 1) != 0) {
        set_err(err, errlen, "cancelled");
        return -1;
    }
    Owned<IHostMemory> serialized(builder->buildSerializedNetwork(*network, *config));
    if (!serialized) {
        set_err(err, errlen,
                "building the engine failed: " + logger.last_error("no reason given"));
        return -1;
    }
    report(progress, user, "build engine", 1, 1);
    plan->data = serialized->data();
    plan->len = serialized->size();
    plan->owner = serialized.release();
    if (cache) {
        Owned<IHostMemory> blob(cache->serialize());
        if (blob) {
            timing->data = blob->data();
            timing->len = blob->size();
            timing->owner = blob.release();
        }
    }
    return 0;
}

// One deserialised engine, its context, stream and buffers.
struct Engine {
    struct Tensor {
        std::string name;
        bool input = false;
        int32_t binding = -1;
        bool dynamic = false;
        void* host = nullptr;    // pinned, or mapped
        void* device = nullptr;  // the GPU's view (the mapped alias when mapped)
        uint64_t capacity = 0;   // elements
    };

    explicit Engine(const ew_trt_api* a) : api(a), logger(logger_for(a)) {}

    ~Engine() {
        context.reset();
        for (Tensor& t : tensors) {
            if (!mapped && t.device != nullptr) {
                api->free_device(t.device);
            }
            if (t.host != nullptr) {
                api->free_host(t.host);
            }
        }
        if (stream != nullptr) {
            api->stream_destroy(stream);
        }
    }

    const ew_trt_api* api;
    Logger& logger;
    Owned<IRuntime> runtime;
    Owned<ICudaEngine> engine;
    Owned<IExecutionContext> context;
    void* stream = nullptr;
    bool mapped = false;
    std::vector<Tensor> tensors;
    size_t input = 0;
    size_t output = 0;
#if !EW_TRT_AT_LEAST(8, 5)
    std::vector<void*> bindings;
#endif

    Dims engine_shape(const Tensor& t) const {
#if EW_TRT_AT_LEAST(8, 5)
        return engine->getTensorShape(t.name.c_str());
#else
        return engine->getBindingDimensions(t.binding);
#endif
    }

    Dims context_shape(const Tensor& t) const {
#if EW_TRT_AT_LEAST(8, 5)
        return context->getTensorShape(t.name.c_str());
#else
        return context->getBindingDimensions(t.binding);
#endif
    }

    Dims profile(const Tensor& t, OptProfileSelector which) const {
#if EW_TRT_AT_LEAST(8, 5)
        return engine->getProfileShape(t.name.c_str(), 0, which);
#else
        return engine->getProfileDimensions(t.binding, 0, which);
#endif
    }

    bool set_input_shape(const Tensor& t, const Dims& d) {
#if EW_TRT_AT_LEAST(8, 5)
        return context->setInputShape(t.name.c_str(), d);
#else
        return context->setBindingDimensions(t.binding, d);
#endif
    }

    bool enqueue() {
#if EW_TRT_AT_LEAST(8, 5)
        return context->enqueueV3(static_cast<cudaStream_t>(stream));
#else
        return context->enqueueV2(bindings.data(), static_cast<cudaStream_t>(stream), nullptr);
#endif
    }

    uint64_t device_memory() const {
#if EW_TRT_AT_LEAST(10, 1)
        return static_cast<uint64_t>(engine->getDeviceMemorySizeV2());
#else
        return static_cast<uint64_t>(engine->getDeviceMemorySize());
#endif
    }
};

// What is wrong with an input or output of `type`, or "" for float32. FP16
// layers are what an FP16 engine is; its inputs and outputs stay float32 (a
// half I/O would need a conversion per frame).
std::string io_type_problem(const std::string& name, DataType type) {
    if (type == DataType::kFLOAT) {
        return "";
    }
    return "tensor " + name + " is " +
           (type == DataType::kHALF ? std::string("float16")
                                    : "not float32 (TensorRT type " +
                                          std::to_string(static_cast<int32_t>(type)) + ")") +
           "; edgewatch feeds and reads float32: keep the model's inputs and outputs float32 "
           "(an FP16 export with keep_io_types=True)";
}

// A fixed-shape input takes exactly its dims: the same element count in
// another layout (1x3x640x480 into 1x3x480x640) would run on wrong data.
bool fixed_input_matches(const Dims& fixed, const Dims& shape) {
    if (fixed.nbDims != shape.nbDims) {
        return false;
    }
    for (int32_t i = 0; i < fixed.nbDims; ++i) {
        if (fixed.d[i] != shape.d[i]) {
            return false;
        }
    }
    return true;
}

// The engine's tensors, in binding order; every one must be float32.
bool list_tensors(Engine& e, char* err, size_t errlen) {
#if EW_TRT_AT_LEAST(8, 5)
    const int32_t n = e.engine->getNbIOTensors();
#else
    const int32_t n = e.engine->getNbBindings();
#endif
    if (n > EW_TRT_MAX_TENSORS) {
        set_err(err, errlen,
                "the engine has " + std::to_string(n) + " inputs and outputs; at most " +
                    std::to_string(EW_TRT_MAX_TENSORS) + " are supported");
        return false;
    }
    int32_t inputs = 0;
    bool have_output = false;
    for (int32_t i = 0; i < n; ++i) {
        Engine::Tensor t;
#if EW_TRT_AT_LEAST(8, 5)
        t.name = e.engine->getIOTensorName(i);
        t.input = e.engine->getTensorIOMode(t.name.c_str()) == TensorIOMode::kINPUT;
        const DataType type = e.engine->getTensorDataType(t.name.c_str());
#else
        t.name = e.engine->getBindingName(i);
        t.input = e.engine->bindingIsInput(i);
        const DataType type = e.engine->getBindingDataType(i);
#endif
        t.binding = i;
        const std::string problem = io_type_problem(t.name, type);
        if (!problem.empty()) {
            set_err(err, errlen, problem);
            return false;
        }
        t.dynamic = has_dynamic(e.engine_shape(t));
        if (t.input) {
            e.input = e.tensors.size();
            ++inputs;
        } else if (!have_output) {
            // The first output is the one the decoders read.
            e.output = e.tensors.size();
            have_output = true;
        }
        e.tensors.push_back(t);
    }
    if (inputs != 1 || !have_output) {
        set_err(err, errlen,
                "the engine has " + std::to_string(inputs) + " input(s) and " +
                    std::to_string(n - inputs) +
                    " output(s); edgewatch runs one input and reads the first output");
        return false;
    }
    return true;
}

bool allocate(Engine& e, Engine::Tensor& t, char* err, size_t errlen) {
    const size_t bytes = static_cast<size_t>(t.capacity) * sizeof(float);
    if (e.mapped) {
        if (!cuda_ok(e.api, e.api->host_alloc(&t.host, bytes, cudaHostAllocMapped),
                     "cudaHostAlloc(mapped)", err, errlen)) {
            return false;
        }
        return cuda_ok(e.api, e.api->host_get_device_pointer(&t.device, t.host, 0),
                       "cudaHostGetDevicePointer", err, errlen);
    }
    if (!cuda_ok(e.api, e.api->malloc_device(&t.device, bytes), "cudaMalloc", err, errlen)) {
        return false;
    }
    return cuda_ok(e.api, e.api->host_alloc(&t.host, bytes, cudaHostAllocDefault),
                   "cudaHostAlloc(pinned)", err, errlen);
}

Engine* load(const ew_trt_api* api, const void* plan, uint64_t len, const ew_trt_load_params* p,
             ew_trt_io* io, char* err, size_t errlen) {
    std::memset(io, 0, sizeof(*io));
    io->failed_step = EW_TRT_STEP_DEVICE;
    std::unique_ptr<Engine> e(new Engine(api));
    if (!select_device(api, p->device, err, errlen)) {
        return nullptr;
    }
    init_plugins(api, e->logger);
    e->mapped = p->mapped != 0;
    io->failed_step = EW_TRT_STEP_RUNTIME;
    e->runtime.reset(static_cast<IRuntime*>(api->create_runtime(&e->logger, NV_TENSORRT_VERSION)));
    if (!e->runtime) {
        set_err(err, errlen, "createInferRuntime failed: " + e->logger.last_error("no reason given"));
        return nullptr;
    }
    io->failed_step = EW_TRT_STEP_DESERIALISE;
    e->engine.reset(e->runtime->deserializeCudaEngine(plan, static_cast<size_t>(len)));
    if (!e->engine) {
        set_err(err, errlen,
                "the engine file does not deserialise: " + e->logger.last_error("no reason given"));
        return nullptr;
    }
    // An engine that deserialised but has tensors edgewatch cannot feed is
    // a bad file too: it was built for something else.
    if (!list_tensors(*e, err, errlen)) {
        return nullptr;
    }
    io->failed_step = EW_TRT_STEP_CONTEXT;
    e->context.reset(e->engine->createExecutionContext());
    if (!e->context) {
        set_err(err, errlen,
                "createExecutionContext failed: " + e->logger.last_error("no reason given"));
        return nullptr;
    }
    io->failed_step = EW_TRT_STEP_BUFFERS;
    if (!cuda_ok(api, api->stream_create(&e->stream), "cudaStreamCreate", err, errlen)) {
        return nullptr;
    }
    // Buffers are sized for the largest input the daemon will send, so that
    // nothing is allocated per frame.
    Engine::Tensor& in = e->tensors[e->input];
    Dims max = e->engine_shape(in);
    if (in.dynamic) {
        const Dims top = e->profile(in, OptProfileSelector::kMAX);
        max = profile_dims(e->engine_shape(in), p->max_dims);
        for (int32_t i = 0; i < max.nbDims && i < top.nbDims; ++i) {
            if (max.d[i] > top.d[i]) {
                set_err(err, errlen,
                        "the engine's profile stops at " + dims_text(top) + ", smaller than the " +
                            dims_text(max) + " input the configuration needs; rebuild the engine");
                return nullptr;
            }
        }
        if (!e->set_input_shape(in, max)) {
            set_err(err, errlen,
                    "the engine refuses input " + dims_text(max) + ": " +
                        e->logger.last_error("no reason given"));
            return nullptr;
        }
    }
#if !EW_TRT_AT_LEAST(8, 5)
    e->bindings.assign(e->tensors.size(), nullptr);
#endif
    uint64_t buffer_bytes = 0;
    for (Engine::Tensor& t : e->tensors) {
        const Dims shape = t.input ? max : e->context_shape(t);
        if (has_dynamic(shape)) {
            set_err(err, errlen,
                    "output " + t.name + " has a data-dependent shape (" + dims_text(shape) +
                        "); edgewatch needs outputs sized by the input");
            return nullptr;
        }
        t.capacity = volume(shape);
        if (!allocate(*e, t, err, errlen)) {
            return nullptr;
        }
        buffer_bytes += t.capacity * sizeof(float);
#if EW_TRT_AT_LEAST(8, 5)
        if (!e->context->setTensorAddress(t.name.c_str(), t.device)) {
            set_err(err, errlen, "setTensorAddress(" + t.name + ") failed");
            return nullptr;
        }
#else
        e->bindings[static_cast<size_t>(t.binding)] = t.device;
#endif
    }
    io->count = static_cast<int32_t>(e->tensors.size());
    for (size_t i = 0; i < e->tensors.size(); ++i) {
        const Engine::Tensor& t = e->tensors[i];
        ew_trt_tensor& out = io->tensors[i];
        std::snprintf(out.name, sizeof(out.name), "%s", t.name.c_str());
        out.is_input = t.input ? 1 : 0;
        const Dims shape = e->engine_shape(t);
        out.rank = shape.nbDims;
        copy_dims(shape, out.dims);
        if (t.input && t.dynamic) {
            copy_dims(e->profile(t, OptProfileSelector::kMIN), out.min_dims);
            copy_dims(e->profile(t, OptProfileSelector::kMAX), out.max_dims);
        } else {
            copy_dims(shape, out.min_dims);
            copy_dims(shape, out.max_dims);
        }
        out.capacity = t.capacity;
    }
    io->device_memory_bytes = e->device_memory();
    io->buffer_bytes = buffer_bytes;
    io->failed_step = EW_TRT_STEP_NONE;
    return e.release();
}

int run(Engine& e, const float* input, const int32_t dims[4], float* output, uint64_t cap,
        int32_t out_dims[EW_TRT_MAX_DIMS], int32_t* out_rank, char* err, size_t errlen) {
    Engine::Tensor& in = e.tensors[e.input];
    Engine::Tensor& out = e.tensors[e.output];
    e.logger.clear();
    const Dims4 shape = nchw(dims);
    const uint64_t n = volume(shape);
    if (!in.dynamic) {
        const Dims fixed = e.engine_shape(in);
        if (!fixed_input_matches(fixed, shape)) {
            set_err(err, errlen,
                    "input " + dims_text(shape) + " does not match the engine's fixed input " +
                        dims_text(fixed) + "; the model takes only that size");
            return -1;
        }
    }
    if (n > in.capacity) {
        set_err(err, errlen,
                "input " + dims_text(shape) + " is larger than the buffers, sized for " +
                    std::to_string(in.capacity) + " values at load");
        return -1;
    }
    if (in.dynamic && !e.set_input_shape(in, shape)) {
        set_err(err, errlen,
                "input " + dims_text(shape) + " is outside the engine's profile (" +
                    dims_text(e.profile(in, OptProfileSelector::kMIN)) + " to " +
                    dims_text(e.profile(in, OptProfileSelector::kMAX)) +
                    "); rebuild the engine for this tiling");
        return -1;
    }
    const Dims result = e.context_shape(out);
    const uint64_t m = volume(result);
    if (m > out.capacity || m > cap) {
        set_err(err, errlen,
                "output " + dims_text(result) + " is larger than its buffer (" +
                    std::to_string(out.capacity < cap ? out.capacity : cap) + " values)");
        return -1;
    }
    std::memcpy(in.host, input, static_cast<size_t>(n) * sizeof(float));
    const auto stream = e.stream;
    if (!e.mapped &&
        !cuda_ok(e.api,
                 e.api->memcpy_async(in.device, in.host, static_cast<size_t>(n) * sizeof(float),
                                     cudaMemcpyHostToDevice, stream),
                 "cudaMemcpyAsync(host to device)", err, errlen)) {
        return -1;
    }
    if (!e.enqueue()) {
        set_err(err, errlen, "enqueue failed: " + e.logger.last_error("no reason given"));
        return -1;
    }
    if (!e.mapped &&
        !cuda_ok(e.api,
                 e.api->memcpy_async(out.host, out.device, static_cast<size_t>(m) * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream),
                 "cudaMemcpyAsync(device to host)", err, errlen)) {
        return -1;
    }
    if (!cuda_ok(e.api, e.api->stream_synchronize(stream), "cudaStreamSynchronize", err,
                 errlen)) {
        return -1;
    }
    std::memcpy(output, out.host, static_cast<size_t>(m) * sizeof(float));
    *out_rank = result.nbDims;
    copy_dims(result, out_dims);
    return 0;
}

// The body of ew_trt_device_info.
int device_info(const ew_trt_api* api, int32_t device, ew_trt_device* out, char* err,
                size_t errlen) {
    std::memset(out, 0, sizeof(*out));
    if (!select_device(api, device, err, errlen)) {
        return -1;
    }
    // Far larger than cudaDeviceProp in any CUDA release; only `name` is read.
    alignas(16) static thread_local unsigned char props[16384];
    std::memset(props, 0, sizeof(props));
    if (!cuda_ok(api, api->get_device_properties(props, device), "cudaGetDeviceProperties",
                 err, errlen)) {
        return -1;
    }
    std::memcpy(out->name, props, sizeof(out->name) - 1);
    int value = 0;
    const struct {
        cudaDeviceAttr attr;
        int32_t* into;
        const char* what;
    } attrs[] = {
        {cudaDevAttrComputeCapabilityMajor, &out->cc_major, "compute capability"},
        {cudaDevAttrComputeCapabilityMinor, &out->cc_minor, "compute capability"},
        {cudaDevAttrIntegrated, &out->integrated, "integrated"},
        {cudaDevAttrCanMapHostMemory, &out->can_map_host_memory, "canMapHostMemory"},
    };
    for (const auto& a : attrs) {
        if (!cuda_ok(api, api->device_get_attribute(&value, static_cast<int>(a.attr), device),
                     a.what, err, errlen)) {
            return -1;
        }
        *a.into = value;
    }
    size_t free_bytes = 0;
    size_t total_bytes = 0;
    if (!cuda_ok(api, api->mem_get_info(&free_bytes, &total_bytes), "cudaMemGetInfo", err,
                 errlen)) {
        return -1;
    }
    out->free_bytes = free_bytes;
    out->total_bytes = total_bytes;
    int runtime = 0;
    if (!cuda_ok(api, api->runtime_get_version(&runtime), "cudaRuntimeGetVersion", err,
                 errlen)) {
        return -1;
    }
    out->cuda_runtime_version = runtime;
    out->trt_version = api->infer_lib_version();
    return 0;
}

// Runs `body`; a C++ exception becomes `fail` and a message, since none may
// cross into Rust.
template <typename R, typename F>
R guarded(const char* what, char* err, size_t errlen, R fail, F&& body) {
    try {
        return body();
    } catch (const std::exception& ex) {
        set_err(err, errlen, std::string(what) + " failed: " + ex.what());
    } catch (...) {
        set_err(err, errlen, std::string(what) + " failed");
    }
    return fail;
}

}  // namespace

extern "C" {

int32_t ew_trt_header_version(void) {
    return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH;
}

int32_t ew_trt_abi(void) { return EW_TRT_ABI; }

int ew_trt_device_info(const ew_trt_api* api, int32_t device, ew_trt_device* out, char* err,
                       size_t errlen) {
    return guarded("device query", err, errlen, -1,
                   [&] { return device_info(api, device, out, err, errlen); });
}

int ew_trt_build(const ew_trt_api* api, const ew_trt_build_params* params,
                 ew_trt_progress progress, void* progress_user, ew_trt_blob* plan,
                 ew_trt_blob* timing_cache, char* err, size_t errlen) {
    return guarded("engine build", err, errlen, -1, [&] {
        return build(api, params, progress, progress_user, plan, timing_cache, err, errlen);
    });
}

void ew_trt_blob_free(ew_trt_blob* blob) {
    if (blob != nullptr && blob->owner != nullptr) {
        delete static_cast<IHostMemory*>(blob->owner);
        blob->owner = nullptr;
        blob->data = nullptr;
        blob->len = 0;
    }
}

void* ew_trt_load(const ew_trt_api* api, const void* plan, uint64_t len,
                  const ew_trt_load_params* params, ew_trt_io* io, char* err, size_t errlen) {
    return guarded("engine load", err, errlen, static_cast<void*>(nullptr), [&]() -> void* {
        return load(api, plan, len, params, io, err, errlen);
    });
}

int ew_trt_run(void* engine, const float* input, const int32_t dims[4], float* output,
               uint64_t output_capacity, int32_t out_dims[EW_TRT_MAX_DIMS], int32_t* out_rank,
               char* err, size_t errlen) {
    return guarded("inference", err, errlen, -1, [&] {
        return run(*static_cast<Engine*>(engine), input, dims, output, output_capacity, out_dims,
                   out_rank, err, errlen);
    });
}

void ew_trt_unload(void* engine) {
    try {
        delete static_cast<Engine*>(engine);
    } catch (...) {
    }
}

}  // extern "C"
