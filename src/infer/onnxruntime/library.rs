//! Finding ONNX Runtime's shared library at run time.
//!
//! Nothing is linked or downloaded at build time: the operator brings the
//! library (a system package, the `onnxruntime` Python wheel they already
//! have, or a file next to the binary) and edgewatch opens it when the
//! configuration asks for `backend = "onnxruntime"`.

use std::path::{Path, PathBuf};

/// The library's file name on this platform.
pub const FILE: &str = "libonnxruntime.so";

/// How to get the library, for messages.
pub const HOW_TO_GET: &str = "run engines/fetch-onnxruntime.sh (/usr/share/edgewatch/fetch-onnxruntime.sh from the package), or `pip install onnxruntime`, or set model.onnxruntime_library to a libonnxruntime.so of version 1.17 or newer";

/// Where the library is looked for, in order, when
/// `model.onnxruntime_library` is not set: `ORT_DYLIB_PATH`, next to the
/// binary (and `../lib/edgewatch/`, where a package would put it), the
/// system's library folders, then the `onnxruntime` wheel of any Python
/// on the machine.
pub fn search_path() -> Vec<PathBuf> {
    search_path_from(
        std::env::var_os("VIRTUAL_ENV").as_deref().map(Path::new),
        std::env::var_os("HOME").as_deref().map(Path::new),
    )
}

/// [`search_path`] for a given `VIRTUAL_ENV` and `HOME`.
fn search_path_from(venv: Option<&Path>, home: Option<&Path>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.clone());
        dirs.push(exe_dir.join("../lib/edgewatch"));
    }
    for d in ["/usr/local/lib", "/usr/lib", "/usr/lib64"] {
        dirs.push(PathBuf::from(d));
    }
    if let Some(triple) = multiarch() {
        dirs.push(Path::new("/usr/lib").join(triple));
    }
    let mut pythons: Vec<PathBuf> = vec!["/usr/local/lib".into(), "/usr/lib".into()];
    if let Some(home) = home {
        pythons.push(home.join(".local/lib"));
    }
    if let Some(venv) = venv {
        pythons.insert(0, venv.join("lib"));
    }
    for lib in pythons {
        for python in children(&lib, "python3") {
            for packages in ["site-packages", "dist-packages"] {
                dirs.push(python.join(packages).join("onnxruntime/capi"));
            }
        }
    }
    dirs
}

/// Why ONNX Runtime cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum OrtError {
    /// No library in any folder looked in.
    #[error("no {FILE} found (looked in {folders} folders: onnxruntime/ beside the model, next to the binary, the system's library folders and Python's onnxruntime wheels); {HOW_TO_GET}")]
    NotFound {
        /// How many folders were looked in.
        folders: usize,
    },
    /// The path given or found is not a file.
    #[error("{} is not a file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The loader refused the file.
    #[error("cannot open ONNX Runtime at {}: {reason}; {HOW_TO_GET}", library.display())]
    Open {
        /// The library file.
        library: PathBuf,
        /// What the loader said, on one line.
        reason: String,
    },
    /// The library loaded but its environment did not start.
    #[error("ONNX Runtime at {} would not start: {reason}", library.display())]
    Start {
        /// The library file.
        library: PathBuf,
        /// What it said.
        reason: String,
    },
}

/// The library to open: `configured` when set, else `ORT_DYLIB_PATH`, else
/// `onnxruntime/` beside the model (where `engines/fetch-onnxruntime.sh`
/// puts it), else the first match on [`search_path`]. The error says where
/// it looked and how to get one.
pub fn locate(configured: Option<&Path>, model: &Path) -> Result<PathBuf, OrtError> {
    if let Some(path) = configured {
        return Ok(path.to_path_buf());
    }
    if let Some(env) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(env));
    }
    let mut dirs = search_path();
    if let Some(dir) = model.parent() {
        dirs.insert(0, dir.join("onnxruntime"));
    }
    dirs.iter()
        .find_map(|d| in_dir(d))
        .ok_or(OrtError::NotFound {
            folders: dirs.len(),
        })
}

/// `dir/libonnxruntime.so`, or the newest-named `libonnxruntime.so.X.Y.Z`
/// there (wheels ship only the versioned file).
fn in_dir(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join(FILE);
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = children(dir, &format!("{FILE}."))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    versioned.sort();
    versioned.pop()
}

/// Entries of `dir` whose names start with `prefix`, sorted.
fn children(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Debian's multiarch folder name for this build's target.
fn multiarch() -> Option<&'static str> {
    match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "arm" => Some("arm-linux-gnueabihf"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wheel_ships_only_the_versioned_file_and_the_newest_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(in_dir(dir.path()), None);
        for v in ["1.17.0", "1.22.1"] {
            std::fs::write(dir.path().join(format!("{FILE}.{v}")), b"").unwrap();
        }
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(
            in_dir(dir.path()),
            Some(dir.path().join("libonnxruntime.so.1.22.1"))
        );
        std::fs::write(dir.path().join(FILE), b"").unwrap();
        assert_eq!(in_dir(dir.path()), Some(dir.path().join(FILE)));
    }

    #[test]
    fn a_configured_path_wins_and_the_search_covers_python_wheels() {
        let p = Path::new("/opt/ort/lib/libonnxruntime.so");
        assert_eq!(locate(Some(p), Path::new("/m/model.onnx")).unwrap(), p);
        // Beside the model, where fetch-onnxruntime.sh puts it.
        let engines = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(engines.path().join("onnxruntime")).unwrap();
        let beside = engines.path().join("onnxruntime/libonnxruntime.so.1.32.0");
        std::fs::write(&beside, b"").unwrap();
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            assert_eq!(
                locate(None, &engines.path().join("model.onnx")).unwrap(),
                beside
            );
        }
        let venv = tempfile::tempdir().unwrap();
        let capi = venv
            .path()
            .join("lib/python3.11/site-packages/onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        std::fs::write(capi.join("libonnxruntime.so.1.32.0"), b"").unwrap();
        let dirs = search_path_from(Some(venv.path()), Some(Path::new("/nonexistent")));
        // The virtualenv's wheel comes before any system Python's.
        let first_python = dirs.iter().position(|d| d.ends_with("onnxruntime/capi"));
        assert_eq!(first_python.map(|i| &dirs[i]), Some(&capi));
        assert!(dirs.iter().any(|d| d == Path::new("/usr/local/lib")));
        let wheel = capi.join("libonnxruntime.so.1.32.0");
        assert!(dirs.iter().filter_map(|d| in_dir(d)).any(|p| p == wheel));
    }
}
