//! Finds and opens TensorRT (libnvinfer, libnvonnxparser) and the CUDA
//! runtime (libcudart) at run time, and hands their entry points to the shim.
//!
//! Nothing is linked: a binary with the TensorRT backend still starts where
//! the libraries are missing or of another major version, and says which
//! library it could not find and how to get it, instead of the dynamic
//! loader refusing to start it at all.

use std::ffi::{c_char, c_void, CStr};
use std::path::{Path, PathBuf};

use libloading::Library;

use super::ffi::Api;

/// A TensorRT version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TrtVersion {
    /// Major.
    pub major: u32,
    /// Minor.
    pub minor: u32,
    /// Patch.
    pub patch: u32,
}

impl TrtVersion {
    /// Decodes `getInferLibVersion()`: `major*1000 + minor*100 + patch` up to
    /// 8.x, `major*10000 + minor*100 + patch` from 10.
    pub fn from_lib(v: i32) -> TrtVersion {
        let v = v.max(0) as u32;
        if v >= 100_000 {
            TrtVersion {
                major: v / 10_000,
                minor: v / 100 % 100,
                patch: v % 100,
            }
        } else {
            TrtVersion {
                major: v / 1000,
                minor: v / 100 % 10,
                patch: v % 100,
            }
        }
    }
}

impl std::fmt::Display for TrtVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why the TensorRT backend cannot start on this machine.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    /// No candidate file could be opened.
    #[error("backend \"tensorrt\": {library} was not found (tried {tried}; {detail}). Install TensorRT{major} with its CUDA runtime (JetPack: sudo apt install nvidia-tensorrt; x86: NVIDIA's TensorRT packages), or point TENSORRT_ROOT / CUDA_HOME at them or add their lib folders to LD_LIBRARY_PATH; or set model.backend = \"cpu\"")]
    NotFound {
        /// The library, e.g. `libnvinfer.so.8`.
        library: String,
        /// Where it was looked for.
        tried: String,
        /// The loader's own message for the first attempt.
        detail: String,
        /// ` 8` or empty.
        major: String,
    },
    /// A library was found but lacks an entry point.
    #[error("backend \"tensorrt\": {path} has no {symbol} ({detail}); it is not the library edgewatch expects: reinstall TensorRT/CUDA, or set model.backend = \"cpu\"")]
    Symbol {
        /// File opened.
        path: String,
        /// Missing symbol.
        symbol: String,
        /// Loader message.
        detail: String,
    },
    /// TensorRT was found, but of a version this binary cannot drive: another
    /// major, or an older minor than the headers the shim was compiled
    /// against (its calls would go through vtable slots that library lacks).
    #[error("backend \"tensorrt\": {path} is TensorRT {found}, but this edgewatch was compiled against TensorRT {built} headers and needs {built_major}.{built_minor} or a later {built_major}.x; install the edgewatch package built for TensorRT {found_major}.{found_minor}, or TensorRT {built}")]
    Version {
        /// File opened.
        path: String,
        /// Its version.
        found: TrtVersion,
        /// Its major.
        found_major: u32,
        /// Its minor.
        found_minor: u32,
        /// The headers' version compiled in.
        built: TrtVersion,
        /// Their major.
        built_major: u32,
        /// Their minor.
        built_minor: u32,
    },
}

/// Where libraries are looked for, besides the loader's own search
/// (`LD_LIBRARY_PATH`, the ld.so cache).
#[derive(Debug, Clone, Default)]
pub struct SearchPaths {
    /// Folders tried in order.
    pub dirs: Vec<PathBuf>,
}

impl SearchPaths {
    /// `TENSORRT_ROOT/lib`, `CUDA_HOME/lib64`, then JetPack's and NVIDIA's
    /// package locations.
    pub fn from_env() -> SearchPaths {
        let mut dirs = Vec::new();
        if let Some(root) = std::env::var_os("TENSORRT_ROOT") {
            dirs.push(Path::new(&root).join("lib"));
            dirs.push(Path::new(&root).join("lib64"));
        }
        for var in ["CUDA_HOME", "CUDA_PATH"] {
            if let Some(root) = std::env::var_os(var) {
                dirs.push(Path::new(&root).join("lib64"));
            }
        }
        for d in [
            "/usr/local/cuda/lib64",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu/tegra",
            "/usr/lib/x86_64-linux-gnu",
        ] {
            dirs.push(PathBuf::from(d));
        }
        SearchPaths { dirs }
    }
}

/// The opened libraries and the entry point table built from them. The
/// libraries stay open as long as this lives.
pub struct Libraries {
    /// The table handed to the shim.
    pub api: Api,
    /// TensorRT's version, from the library itself.
    pub version: TrtVersion,
    /// Files opened: nvinfer, nvonnxparser, cudart.
    pub paths: [String; 3],
    /// libnvinfer_plugin, when installed.
    pub plugins: Option<String>,
    _libs: [Library; 3],
    _plugin: Option<Library>,
}

// The table holds plain function pointers into libraries this struct keeps
// open; the log callback's user pointer is unused (null).
unsafe impl Send for Libraries {}
unsafe impl Sync for Libraries {}

/// CUDA runtime sonames, newest first; `libcudart.so` is the dev symlink.
const CUDART: [&str; 5] = [
    "libcudart.so.12",
    "libcudart.so.11.0",
    "libcudart.so.10.2",
    "libcudart.so.13",
    "libcudart.so",
];

impl Libraries {
    /// Opens TensorRT of one of `majors` (the first found wins) and the CUDA
    /// runtime. `built` is the headers' version the shim was compiled
    /// against, checked when given: the library must be of the same major
    /// and at least its minor.
    pub fn open(
        paths: &SearchPaths,
        majors: &[u32],
        built: Option<TrtVersion>,
    ) -> Result<Libraries, LibraryError> {
        let names: Vec<String> = majors
            .iter()
            .map(|m| format!("libnvinfer.so.{m}"))
            .collect();
        let major_hint = match majors {
            [m] => format!(" {m}"),
            _ => String::new(),
        };
        let (nvinfer, nvinfer_path) = open_first(&names, paths, &major_hint)?;
        let version_fn: unsafe extern "C" fn() -> i32 =
            symbol(&nvinfer, &nvinfer_path, "getInferLibVersion")?;
        // SAFETY: getInferLibVersion takes nothing and returns an int.
        let version = TrtVersion::from_lib(unsafe { version_fn() });
        if let Some(built) = built {
            if !runs_shim_built_for(version, built) {
                return Err(LibraryError::Version {
                    path: nvinfer_path,
                    found: version,
                    found_major: version.major,
                    found_minor: version.minor,
                    built,
                    built_major: built.major,
                    built_minor: built.minor,
                });
            }
        }
        let parser_name = format!("libnvonnxparser.so.{}", version.major);
        let (parser, parser_path) = open_first(&[parser_name], paths, &major_hint)?;
        let cudart_names: Vec<String> = CUDART.iter().map(|s| s.to_string()).collect();
        // The CUDA runtime nvinfer already brought in, if it did: a second,
        // different libcudart in one process would have its own contexts.
        let (cudart, cudart_path) = match already_loaded(&cudart_names) {
            Some(found) => found,
            None => open_first(&cudart_names, paths, &major_hint)?,
        };
        let plugin_name = format!("libnvinfer_plugin.so.{}", version.major);
        let plugin = open_first(std::slice::from_ref(&plugin_name), paths, &major_hint).ok();
        let (cu, cp) = (&cudart, cudart_path.as_str());
        let api = Api {
            create_builder: symbol(&nvinfer, &nvinfer_path, "createInferBuilder_INTERNAL")?,
            create_runtime: symbol(&nvinfer, &nvinfer_path, "createInferRuntime_INTERNAL")?,
            create_onnx_parser: symbol(&parser, &parser_path, "createNvOnnxParser_INTERNAL")?,
            infer_lib_version: version_fn,
            set_device: symbol(cu, cp, "cudaSetDevice")?,
            set_device_flags: symbol(cu, cp, "cudaSetDeviceFlags")?,
            device_get_attribute: symbol(cu, cp, "cudaDeviceGetAttribute")?,
            // CUDA 12 renamed it (a larger struct); only the name field, which
            // leads every version's struct, is read.
            get_device_properties: symbol(cu, cp, "cudaGetDeviceProperties_v2")
                .or_else(|_| symbol(cu, cp, "cudaGetDeviceProperties"))?,
            mem_get_info: symbol(cu, cp, "cudaMemGetInfo")?,
            malloc_device: symbol(cu, cp, "cudaMalloc")?,
            free_device: symbol(cu, cp, "cudaFree")?,
            host_alloc: symbol(cu, cp, "cudaHostAlloc")?,
            free_host: symbol(cu, cp, "cudaFreeHost")?,
            host_get_device_pointer: symbol(cu, cp, "cudaHostGetDevicePointer")?,
            stream_create: symbol(cu, cp, "cudaStreamCreate")?,
            stream_destroy: symbol(cu, cp, "cudaStreamDestroy")?,
            stream_synchronize: symbol(cu, cp, "cudaStreamSynchronize")?,
            memcpy_async: symbol(cu, cp, "cudaMemcpyAsync")?,
            get_error_string: symbol(cu, cp, "cudaGetErrorString")?,
            runtime_get_version: symbol(cu, cp, "cudaRuntimeGetVersion")?,
            log: Some(log_line),
            log_user: std::ptr::null_mut(),
            get_last_error: symbol(cu, cp, "cudaGetLastError")?,
            init_plugins: plugin
                .as_ref()
                .and_then(|(lib, path)| symbol(lib, path, "initLibNvInferPlugins").ok()),
        };
        Ok(Libraries {
            api,
            version,
            paths: [nvinfer_path, parser_path, cudart_path],
            plugins: plugin.as_ref().map(|(_, p)| p.clone()),
            _libs: [nvinfer, parser, cudart],
            _plugin: plugin.map(|(lib, _)| lib),
        })
    }
}

/// Whether a TensorRT library of `found` can run a shim compiled against
/// `built` headers: the same major, and a minor at least the headers' (a
/// newer minor only adds to the interfaces; an older one lacks slots).
pub fn runs_shim_built_for(found: TrtVersion, built: TrtVersion) -> bool {
    found.major == built.major && found.minor >= built.minor
}

/// The first of `names` already mapped into this process (RTLD_NOLOAD).
fn already_loaded(names: &[String]) -> Option<(Library, String)> {
    use libloading::os::unix::{Library as UnixLibrary, RTLD_NOW};
    const RTLD_NOLOAD: i32 = 4;
    names.iter().find_map(|name| {
        // SAFETY: RTLD_NOLOAD opens nothing new; it only returns a handle
        // to a library the process has already loaded and initialised.
        let lib = unsafe { UnixLibrary::open(Some(name), RTLD_NOW | RTLD_NOLOAD) }.ok()?;
        Some((
            Library::from(lib),
            format!("{name} (already loaded by TensorRT)"),
        ))
    })
}

/// The first of `names` that opens: by bare name (the loader's search), then
/// in each folder.
fn open_first(
    names: &[String],
    paths: &SearchPaths,
    major: &str,
) -> Result<(Library, String), LibraryError> {
    let mut first_error = None;
    for name in names {
        let candidates = std::iter::once(PathBuf::from(name))
            .chain(paths.dirs.iter().map(|d| d.join(name)))
            .filter(|p| p.components().count() == 1 || p.exists());
        for candidate in candidates {
            // SAFETY: opening runs the library's initialisers; these are
            // NVIDIA's own libraries, the ones this backend exists to use.
            match unsafe { Library::new(&candidate) } {
                Ok(lib) => return Ok((lib, candidate.display().to_string())),
                Err(e) => {
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }
    let dirs: Vec<String> = paths.dirs.iter().map(|d| d.display().to_string()).collect();
    Err(LibraryError::NotFound {
        library: names.join(" or "),
        tried: format!(
            "the loader's path (LD_LIBRARY_PATH, ld.so.cache), then {}",
            dirs.join(", ")
        ),
        detail: first_error.unwrap_or_else(|| "no candidate file exists".into()),
        major: major.to_string(),
    })
}

/// `name` from `lib`, typed as the `Api` field it fills: each field's type
/// is that function's signature in NVIDIA's headers (see shim/ew_trt.h).
fn symbol<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, LibraryError> {
    // SAFETY: T is the function-pointer type of `name` per NVIDIA's headers.
    unsafe {
        lib.get::<T>(name.as_bytes())
            .map(|s| *s)
            .map_err(|e| LibraryError::Symbol {
                path: path.to_string(),
                symbol: name.to_string(),
                detail: e.to_string(),
            })
    }
}

/// TensorRT's log, into ours: errors and warnings as such, info at debug
/// (a build prints hundreds of lines), verbose at trace.
unsafe extern "C" fn log_line(_user: *mut c_void, severity: i32, message: *const c_char) {
    if message.is_null() {
        return;
    }
    // SAFETY: TensorRT passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    match severity {
        0 | 1 => tracing::error!(target: "tensorrt", "TensorRT: {text}"),
        2 => tracing::warn!(target: "tensorrt", "TensorRT: {text}"),
        3 => tracing::debug!(target: "tensorrt", "TensorRT: {text}"),
        _ => tracing::trace!(target: "tensorrt", "TensorRT: {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_decode_in_both_schemes() {
        assert_eq!(TrtVersion::from_lib(8201).to_string(), "8.2.1");
        assert_eq!(TrtVersion::from_lib(8601).to_string(), "8.6.1");
        assert_eq!(TrtVersion::from_lib(101300).to_string(), "10.13.0");
        assert_eq!(TrtVersion::from_lib(110000).to_string(), "11.0.0");
    }

    #[test]
    fn a_machine_without_tensorrt_gets_one_line_naming_the_library_and_the_fix() {
        let empty = tempfile::tempdir().unwrap();
        let paths = SearchPaths {
            dirs: vec![empty.path().to_path_buf()],
        };
        let err = Libraries::open(&paths, &[8], Some(TrtVersion::from_lib(8201)))
            .err()
            .expect("no TensorRT here");
        let text = err.to_string();
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("libnvinfer.so.8 was not found"), "{text}");
        assert!(text.contains("apt install nvidia-tensorrt"), "{text}");
        assert!(text.contains("model.backend = \"cpu\""), "{text}");
        assert!(text.contains("cannot open shared object file"), "{text}");
    }

    /// Stand-ins with the real sonames and symbols, compiled now with the
    /// system C compiler: they exercise the loader, not TensorRT.
    fn fake_libraries(dir: &Path, trt_version: i32, skip_cuda_symbol: Option<&str>) {
        let nvinfer = format!(
            "int getInferLibVersion(void) {{ return {trt_version}; }}
             void* createInferBuilder_INTERNAL(void* l, int v) {{ (void)l; (void)v; return 0; }}
             void* createInferRuntime_INTERNAL(void* l, int v) {{ (void)l; (void)v; return 0; }}"
        );
        let major = TrtVersion::from_lib(trt_version).major;
        let parser =
            "void* createNvOnnxParser_INTERNAL(void* n, void* l, int v) { (void)n; (void)l; (void)v; return 0; }"
                .to_string();
        let cuda_fns = [
            "cudaSetDevice",
            "cudaSetDeviceFlags",
            "cudaDeviceGetAttribute",
            "cudaGetDeviceProperties_v2",
            "cudaMemGetInfo",
            "cudaMalloc",
            "cudaFree",
            "cudaHostAlloc",
            "cudaFreeHost",
            "cudaHostGetDevicePointer",
            "cudaStreamCreate",
            "cudaStreamDestroy",
            "cudaStreamSynchronize",
            "cudaMemcpyAsync",
            "cudaGetErrorString",
            "cudaRuntimeGetVersion",
            "cudaGetLastError",
        ];
        let cudart: String = cuda_fns
            .iter()
            .filter(|f| Some(**f) != skip_cuda_symbol)
            .map(|f| format!("int {f}(void) {{ return 0; }}\n"))
            .collect();
        for (file, src) in [
            (format!("libnvinfer.so.{major}"), nvinfer),
            (format!("libnvonnxparser.so.{major}"), parser),
            ("libcudart.so.10.2".to_string(), cudart),
        ] {
            let c = dir.join(format!("{file}.c"));
            std::fs::write(&c, src).unwrap();
            let status = std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-o"])
                .arg(dir.join(&file))
                .arg(&c)
                .status()
                .expect("a C compiler (cc) for the stand-in libraries");
            assert!(status.success());
        }
    }

    #[test]
    fn opens_the_libraries_and_reads_their_version() {
        let dir = tempfile::tempdir().unwrap();
        fake_libraries(dir.path(), 8201, None);
        let paths = SearchPaths {
            dirs: vec![dir.path().to_path_buf()],
        };
        let libs = Libraries::open(&paths, &[10, 8], Some(TrtVersion::from_lib(8201)))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(libs.version.to_string(), "8.2.1");
        assert!(
            libs.paths[0].ends_with("libnvinfer.so.8"),
            "{:?}",
            libs.paths
        );
        assert!(
            libs.paths[2].ends_with("libcudart.so.10.2"),
            "{:?}",
            libs.paths
        );
        // SAFETY: the stand-in's function takes nothing.
        assert_eq!(unsafe { (libs.api.infer_lib_version)() }, 8201);
    }

    #[test]
    fn another_major_version_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        fake_libraries(dir.path(), 101300, None);
        let paths = SearchPaths {
            dirs: vec![dir.path().to_path_buf()],
        };
        let err = Libraries::open(&paths, &[10], Some(TrtVersion::from_lib(8201)))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("is TensorRT 10.13.0"), "{text}");
        assert!(
            text.contains("compiled against TensorRT 8.2.1 headers"),
            "{text}"
        );
    }

    /// A shim built against 8.6 headers calls through vtable slots that
    /// 8.2 (the Nano's JetPack 4.6) does not have: refused, saying so.
    #[test]
    fn an_older_minor_than_the_headers_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fake_libraries(dir.path(), 8201, None);
        let paths = SearchPaths {
            dirs: vec![dir.path().to_path_buf()],
        };
        let err = Libraries::open(&paths, &[8], Some(TrtVersion::from_lib(8601)))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(text.contains("is TensorRT 8.2.1"), "{text}");
        assert!(text.contains("needs 8.6 or a later 8.x"), "{text}");
        // A newer minor than the headers only adds: it runs.
        assert!(runs_shim_built_for(
            TrtVersion::from_lib(8601),
            TrtVersion::from_lib(8201)
        ));
        assert!(runs_shim_built_for(
            TrtVersion::from_lib(101300),
            TrtVersion::from_lib(100000)
        ));
        assert!(!runs_shim_built_for(
            TrtVersion::from_lib(101300),
            TrtVersion::from_lib(101400)
        ));
        assert!(!runs_shim_built_for(
            TrtVersion::from_lib(8601),
            TrtVersion::from_lib(100000)
        ));
    }

    #[test]
    fn a_library_without_an_entry_point_is_named() {
        let dir = tempfile::tempdir().unwrap();
        fake_libraries(dir.path(), 8201, Some("cudaMemcpyAsync"));
        let paths = SearchPaths {
            dirs: vec![dir.path().to_path_buf()],
        };
        let err = Libraries::open(&paths, &[8], None).err().unwrap();
        let text = err.to_string();
        assert!(text.contains("has no cudaMemcpyAsync"), "{text}");
        assert!(text.contains("libcudart.so.10.2"), "{text}");
    }
}
