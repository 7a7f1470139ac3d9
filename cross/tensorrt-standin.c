/* Stand-ins for libnvinfer.so.8, libnvonnxparser.so.8 and libcudart.so.10.2
 * with the real entry-point names, for cross/check-tensorrt.sh on machines
 * without a GPU. They drive the feature build's real code (library loader,
 * shim, device query, build request, background build, CPU fallback) up to
 * the first TensorRT object, which they refuse to create. Nothing here
 * pretends to infer. Build one per library with -DLIB_NVINFER, -DLIB_PARSER
 * or -DLIB_CUDART.
 *
 * Where it matters they behave as CUDA 10.2 does: the first call that needs
 * a context creates the current device's, and cudaSetDeviceFlags then
 * answers cudaErrorSetOnActiveProcess (708) and leaves it for
 * cudaGetLastError. STANDIN_TRT_VERSION sets what getInferLibVersion says
 * (8201 by default); STANDIN_TRACE names a file that gets one line per
 * device call, for checks of their order. */
#include <stdio.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifdef LIB_NVINFER
int getInferLibVersion(void) {
    const char* v = getenv("STANDIN_TRT_VERSION");
    return v != NULL ? atoi(v) : 8201;
}
void* createInferBuilder_INTERNAL(void* logger, int version) { (void)logger; (void)version; return NULL; }
void* createInferRuntime_INTERNAL(void* logger, int version) { (void)logger; (void)version; return NULL; }
#endif

#ifdef LIB_PARSER
void* createNvOnnxParser_INTERNAL(void* n, void* l, int v) { (void)n; (void)l; (void)v; return NULL; }
#endif

#ifdef LIB_CUDART
static int current = 0;
static int context[8];
static int last_error = 0;

static void trace(const char* what, int device) {
    const char* path = getenv("STANDIN_TRACE");
    if (path != NULL) {
        FILE* f = fopen(path, "a");
        if (f != NULL) {
            fprintf(f, "%s %d\n", what, device);
            fclose(f);
        }
    }
}

/* What needs a context starts the current device's, as the runtime does. */
static void need_context(void) {
    if (!context[current & 7]) {
        context[current & 7] = 1;
        trace("context", current);
    }
}

static int fail(int e) {
    last_error = e;
    return e;
}

int cudaSetDevice(int d) { current = d; trace("cudaSetDevice", d); return 0; }
int cudaSetDeviceFlags(unsigned f) {
    (void)f;
    trace("cudaSetDeviceFlags", current);
    return context[current & 7] ? fail(708) : 0; /* cudaErrorSetOnActiveProcess */
}
int cudaGetLastError(void) { int e = last_error; last_error = 0; return e; }
/* A Jetson Nano: compute 5.3, integrated, can map host memory. */
int cudaDeviceGetAttribute(int* v, int attr, int d) {
    (void)d;
    *v = attr == 75 ? 5 : attr == 76 ? 3 : 1;
    return 0;
}
int cudaGetDeviceProperties_v2(void* p, int d) { (void)d; strcpy((char*)p, "Stand-in Tegra X1"); return 0; }
int cudaMemGetInfo(size_t* f, size_t* t) { need_context(); *f = (size_t)2 << 30; *t = (size_t)4 << 30; return 0; }
int cudaRuntimeGetVersion(int* v) { *v = 10020; return 0; }
const char* cudaGetErrorString(int e) { return e == 708 ? "cudaErrorSetOnActiveProcess" : "stand-in"; }
int cudaMalloc(void** p, size_t n) { (void)p; (void)n; need_context(); return fail(2); }
int cudaFree(void* p) { (void)p; return 0; }
int cudaHostAlloc(void** p, size_t n, unsigned f) { (void)p; (void)n; (void)f; need_context(); return fail(2); }
int cudaFreeHost(void* p) { (void)p; return 0; }
int cudaHostGetDevicePointer(void** d, void* h, unsigned f) { (void)d; (void)h; (void)f; return fail(2); }
int cudaStreamCreate(void** s) { (void)s; need_context(); return fail(2); }
int cudaStreamDestroy(void* s) { (void)s; return 0; }
int cudaStreamSynchronize(void* s) { (void)s; return 0; }
int cudaMemcpyAsync(void* d, const void* s, size_t n, int k, void* st) { (void)d; (void)s; (void)n; (void)k; (void)st; return fail(2); }
#endif
