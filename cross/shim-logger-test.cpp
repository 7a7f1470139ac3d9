// The shim's logger under ThreadSanitizer: TensorRT 10's builder logs from
// its own threads while the calling thread reads the last error, and every
// builder and runtime of the process share one logger. Compiled by
// cross/check-tensorrt.sh against each header set:
//   g++ -std=c++17 -fsanitize=thread -I<trt> -I<cuda> cross/shim-logger-test.cpp
// The shim is included whole, so its internal Logger is what runs.
#include "../src/infer/tensorrt/shim/ew_trt.cpp"

#include <atomic>
#include <cstdio>
#include <thread>

namespace {
std::atomic<int> forwarded{0};
void count_line(void*, int32_t, const char*) { forwarded.fetch_add(1); }
}  // namespace

int main() {
    ew_trt_api api{};
    api.log = count_line;
    Logger& a = logger_for(&api);
    Logger& b = logger_for(&api);
    if (&a != &b) {
        std::fprintf(stderr, "two loggers in one process\n");
        return 1;
    }
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&a, t] {
            for (int i = 0; i < 2000; ++i) {
                a.log(ILogger::Severity::kERROR, t % 2 ? "builder thread error" : "another error");
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
    for (auto& t : threads) {
        t.join();
    }
    a.log(ILogger::Severity::kERROR, "the failing call's reason");
    last = a.last_error("none");
    if (forwarded.load() != 4 * 2000 * 2 + 1 || last != "the failing call's reason") {
        std::fprintf(stderr, "forwarded %d lines, last error \"%s\"\n", forwarded.load(), last.c_str());
        return 1;
    }
    std::printf("shim logger: one per process, %d lines from 4 threads, no race\n", forwarded.load());
    return 0;
}
