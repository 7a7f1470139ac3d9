// The TensorRT shim's own logic, without a GPU: the shim is included whole
// (its internals are in an anonymous namespace) and driven with an entry
// point table of stand-ins that behave like CUDA where it matters. Built by
// cross/check-tensorrt.sh against each header set, under ThreadSanitizer:
//   g++ -std=c++17 -fsanitize=thread -isystem <trt> -isystem <cuda> cross/shim-test.cpp
// Each check names the review finding it guards (issue "TensorRT, ready for
// the first Jetson").
#include "../src/infer/tensorrt/shim/ew_trt.cpp"

#include <atomic>
#include <cstdio>
#include <thread>

namespace {

int failures = 0;
void check(bool ok, const char* what) {
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
    failures += ok ? 0 : 1;
}

// CUDA 10.2 as the Nano has it: the first call that needs a context makes
// the current device's; cudaSetDeviceFlags then answers 708 and leaves it
// for cudaGetLastError.
struct FakeCuda {
    int current = 0;
    bool context[4] = {false, false, false, false};
    int last_error = 0;
    std::vector<std::string> calls;
    int fail_set_device = 0;
} cuda;

int set_device(int d) {
    cuda.calls.push_back("set_device " + std::to_string(d));
    if (cuda.fail_set_device != 0) {
        return cuda.fail_set_device;
    }
    cuda.current = d;
    return 0;
}
int set_device_flags(unsigned int) {
    cuda.calls.push_back("set_device_flags " + std::to_string(cuda.current));
    if (cuda.context[cuda.current]) {
        cuda.last_error = cudaErrorSetOnActiveProcess;
        return cudaErrorSetOnActiveProcess;
    }
    return 0;
}
int mem_get_info(size_t* f, size_t* t) {
    cuda.context[cuda.current] = true;
    *f = 1;
    *t = 2;
    return 0;
}
int get_last_error() {
    int e = cuda.last_error;
    cuda.last_error = 0;
    return e;
}
const char* error_string(int) { return "stand-in"; }
void* no_runtime(void*, int32_t) { return nullptr; }

std::atomic<int> forwarded{0};
void count_line(void*, int32_t, const char*) { forwarded.fetch_add(1); }

ew_trt_api fake_api() {
    ew_trt_api api{};
    api.set_device = set_device;
    api.set_device_flags = set_device_flags;
    api.mem_get_info = mem_get_info;
    api.get_last_error = get_last_error;
    api.get_error_string = error_string;
    api.create_runtime = no_runtime;
    api.log = count_line;
    return api;
}

}  // namespace

int main() {
    ew_trt_api api = fake_api();
    char err[512] = {0};

    // 1. Device first, then flags; 708 on a live context is harmless and cleared.
    cuda.calls.clear();
    bool ok = select_device(&api, 1, err, sizeof(err));
    check(ok && cuda.calls.front() == "set_device 1", "the device is set before its flags");
    size_t f = 0, t = 0;
    api.mem_get_info(&f, &t);  // the device query makes the context
    ok = select_device(&api, 1, err, sizeof(err));
    check(ok, "cudaSetDeviceFlags answering 708 on a live context is not a failure");
    check(cuda.last_error == 0, "the tolerated 708 is cleared for TensorRT's own checks");
    check(!cuda.context[0], "no context on device 0 when device 1 is used");

    // 2. A failed load says which step failed; only a bad file is thrown away.
    ew_trt_io io{};
    ew_trt_load_params params{};
    params.device = 1;
    void* e = ew_trt_load(&api, "plan", 4, &params, &io, err, sizeof(err));
    check(e == nullptr && io.failed_step == EW_TRT_STEP_RUNTIME,
          "no runtime: the step is RUNTIME, the engine file is kept");
    cuda.fail_set_device = 2;
    e = ew_trt_load(&api, "plan", 4, &params, &io, err, sizeof(err));
    check(e == nullptr && io.failed_step == EW_TRT_STEP_DEVICE &&
              std::string(err).find("cudaSetDevice failed") != std::string::npos,
          "a device that fails: the step is DEVICE, the engine file is kept");
    cuda.fail_set_device = 0;

    // 4. A fixed input takes exactly its dims, not any of the same count.
    check(fixed_input_matches(Dims4(1, 3, 480, 640), Dims4(1, 3, 480, 640)), "same dims run");
    check(!fixed_input_matches(Dims4(1, 3, 480, 640), Dims4(1, 3, 640, 480)),
          "same element count in another layout is refused");

    // 6. FP16 I/O is refused with what to do; float32 passes.
    check(io_type_problem("x", DataType::kFLOAT).empty(), "float32 I/O passes");
    const std::string half = io_type_problem("x", DataType::kHALF);
    check(half.find("float16") != std::string::npos && half.find("keep_io_types") != std::string::npos,
          "float16 I/O says to keep float32 inputs and outputs");

    // 5. One logger for the process; threads log while the caller reads.
    Logger& a = logger_for(&api);
    check(&a == &logger_for(&api), "one logger per process");
    forwarded = 0;
    std::vector<std::thread> threads;
    for (int n = 0; n < 4; ++n) {
        threads.emplace_back([&a, n] {
            for (int i = 0; i < 2000; ++i) {
                a.log(ILogger::Severity::kERROR, n % 2 ? "builder thread error" : "another error");
                a.log(ILogger::Severity::kINFO, "info");
            }
        });
    }
    std::string last;
    for (int i = 0; i < 2000; ++i) {
        last = a.last_error("none");
        if (i % 100 == 0) {
            a.clear();
        }
    }
    for (auto& th : threads) {
        th.join();
    }
    a.log(ILogger::Severity::kERROR, "the failing call's reason");
    check(forwarded.load() == 4 * 2000 * 2 + 1 && a.last_error("none") == "the failing call's reason",
          "every line forwarded from 4 threads, the last error kept (ThreadSanitizer watches)");

    std::printf("shim: %d failure(s)\n", failures);
    return failures == 0 ? 0 : 1;
}
