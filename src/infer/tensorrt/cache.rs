//! The engine cache: one serialized engine per model, TensorRT version, GPU,
//! precision and input shape, with a JSON manifest beside it.
//!
//! An engine only runs on the TensorRT and GPU it was built for, and a build
//! takes minutes on a Nano, so a valid entry is reused for ever and anything
//! doubtful is rebuilt, never trusted: a key that differs, a missing or
//! truncated file, a checksum that does not match. Files are written to a
//! temporary name, synced and renamed, the manifest last: a crash leaves
//! either the old entry or the new one.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Manifest schema; a change that old readers cannot follow bumps it.
pub const MANIFEST_SCHEMA: &str = "edgewatch.engine/1";

/// Engine precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// FP16 layers where faster, FP32 elsewhere.
    #[default]
    Fp16,
    /// FP32 only.
    Fp32,
}

impl Precision {
    /// As written in configs and file names.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp16 => "fp16",
            Precision::Fp32 => "fp32",
        }
    }
}

/// Everything an engine is specific to. Two configurations with equal keys
/// share one engine; any difference means another build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineKey {
    /// sha256 of the ONNX file.
    pub model_sha256: String,
    /// TensorRT version of the library that builds and runs it, e.g. `8.2.1`.
    pub tensorrt: String,
    /// GPU name as CUDA reports it, e.g. `NVIDIA Tegra X1`.
    pub gpu: String,
    /// Compute capability, e.g. `5.3`.
    pub compute_capability: String,
    /// Precision actually built (FP32 where the GPU has no fast FP16).
    pub precision: Precision,
    /// Largest batch.
    pub batch: u32,
    /// Input NCHW shapes of the optimisation profile: min, opt, max.
    pub input: [[u32; 4]; 3],
    /// Built without cuBLAS/cuDNN tactics (those libraries then need not load).
    pub restricted_tactics: bool,
}

impl EngineKey {
    /// Short digest naming the entry's files.
    pub fn digest(&self) -> String {
        let json = serde_json::to_vec(self).expect("a key always serialises");
        hex(&Sha256::digest(&json))[..16].to_string()
    }

    /// The fields in which `self` differs from `other`, as `name: old -> new`.
    pub fn changes_from(&self, other: &EngineKey) -> Vec<String> {
        let (a, b) = (
            serde_json::to_value(other).expect("serialises"),
            serde_json::to_value(self).expect("serialises"),
        );
        let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
            return Vec::new();
        };
        b.iter()
            .filter(|(k, v)| a.get(*k) != Some(v))
            .map(|(k, v)| {
                let old = a.get(k).map(|o| o.to_string()).unwrap_or_default();
                format!("{k}: {old} -> {v}")
            })
            .collect()
    }
}

/// How the engine compared with the CPU backend on the reference frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// Mean absolute difference of the first output, engine vs CPU.
    pub mean_abs_diff: f64,
    /// Largest absolute difference.
    pub max_abs_diff: f64,
    /// Detections the CPU backend found.
    pub cpu_detections: usize,
    /// Detections the engine found.
    pub engine_detections: usize,
    /// Of the larger count, how many found a partner (IoU ≥ 0.5, same class).
    pub matched: usize,
}

/// The JSON file beside each engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema: String,
    /// What the engine is for.
    pub key: EngineKey,
    /// Model name (file stem), for people reading the folder.
    pub model: String,
    /// sha256 of the engine file.
    pub engine_sha256: String,
    /// Its length in bytes.
    pub engine_bytes: u64,
    /// RFC 3339 time of the build.
    pub built_at: String,
    /// How long the build took.
    pub build_seconds: f64,
    /// Builder workspace limit used.
    pub workspace_bytes: u64,
    /// GPU activation memory of one execution context.
    pub device_memory_bytes: u64,
    /// The FP16 sanity check that admitted the engine.
    pub check: CheckRecord,
}

/// Why a cached engine was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Miss {
    /// Nothing was ever built for this key.
    #[error("no engine is cached for this model, GPU and TensorRT yet{}", stale_text(.0))]
    Absent(Vec<String>),
    /// The manifest cannot be read or parsed.
    #[error("the manifest {0} is unreadable ({1})")]
    BadManifest(PathBuf, String),
    /// The manifest names another key (edited, or a digest collision).
    #[error("the manifest {0} is for another configuration ({1})")]
    KeyMismatch(PathBuf, String),
    /// The engine file is missing, truncated or altered.
    #[error("the engine file {0} is {1}")]
    BadEngine(PathBuf, String),
}

fn stale_text(changes: &[String]) -> String {
    if changes.is_empty() {
        String::new()
    } else {
        format!(" (an older engine exists; changed: {})", changes.join(", "))
    }
}

/// A valid entry, read into memory.
#[derive(Debug)]
pub struct Cached {
    /// The serialized engine.
    pub plan: Vec<u8>,
    /// Its manifest.
    pub manifest: Manifest,
    /// Where the engine file is.
    pub path: PathBuf,
}

/// The `engines/` folder.
#[derive(Debug, Clone)]
pub struct EngineCache {
    dir: PathBuf,
}

impl EngineCache {
    /// The cache in `dir` (created on first store).
    pub fn new(dir: impl Into<PathBuf>) -> EngineCache {
        EngineCache { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `(engine, manifest)` paths of `model`'s entry for `key`.
    pub fn paths(&self, model: &str, key: &EngineKey) -> (PathBuf, PathBuf) {
        let stem = format!("{model}-{}", key.digest());
        (
            self.dir.join(format!("{stem}.engine")),
            self.dir.join(format!("{stem}.json")),
        )
    }

    /// The valid entry for `key`, or why there is none.
    pub fn lookup(&self, model: &str, key: &EngineKey) -> Result<Cached, Miss> {
        let (engine, manifest_path) = self.paths(model, key);
        let text = match fs::read_to_string(&manifest_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let changes = self
                    .entries(model)
                    .into_iter()
                    .max_by(|a, b| a.1.built_at.cmp(&b.1.built_at))
                    .map(|(_, old)| key.changes_from(&old.key))
                    .unwrap_or_default();
                return Err(Miss::Absent(changes));
            }
            Err(e) => return Err(Miss::BadManifest(manifest_path, e.to_string())),
        };
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Miss::BadManifest(manifest_path.clone(), e.to_string()))?;
        if manifest.schema != MANIFEST_SCHEMA {
            return Err(Miss::BadManifest(
                manifest_path,
                format!("schema {} is not {MANIFEST_SCHEMA}", manifest.schema),
            ));
        }
        if manifest.key != *key {
            return Err(Miss::KeyMismatch(
                manifest_path,
                key.changes_from(&manifest.key).join(", "),
            ));
        }
        let plan = fs::read(&engine).map_err(|e| Miss::BadEngine(engine.clone(), e.to_string()))?;
        if plan.len() as u64 != manifest.engine_bytes {
            return Err(Miss::BadEngine(
                engine,
                format!(
                    "truncated: {} bytes where the manifest says {}",
                    plan.len(),
                    manifest.engine_bytes
                ),
            ));
        }
        let sha = hex(&Sha256::digest(&plan));
        if sha != manifest.engine_sha256 {
            return Err(Miss::BadEngine(
                engine,
                format!(
                    "altered: sha256 {} where the manifest says {}",
                    &sha[..12],
                    &manifest.engine_sha256[..manifest.engine_sha256.len().min(12)]
                ),
            ));
        }
        Ok(Cached {
            plan,
            manifest,
            path: engine,
        })
    }

    /// Stores an engine and its manifest atomically (engine first, manifest
    /// last: the manifest is what makes an entry valid), then removes
    /// `model`'s entries for other keys, which can no longer be used.
    /// `manifest`'s engine checksum and length are filled in here.
    pub fn store(
        &self,
        model: &str,
        plan: &[u8],
        mut manifest: Manifest,
    ) -> std::io::Result<PathBuf> {
        fs::create_dir_all(&self.dir)?;
        manifest.schema = MANIFEST_SCHEMA.to_string();
        manifest.model = model.to_string();
        manifest.engine_bytes = plan.len() as u64;
        manifest.engine_sha256 = hex(&Sha256::digest(plan));
        let (engine, manifest_path) = self.paths(model, &manifest.key);
        write_atomic(&engine, plan)?;
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        write_atomic(&manifest_path, &json)?;
        for (path, old) in self.entries(model) {
            if old.key != manifest.key {
                let (e, m) = self.paths(model, &old.key);
                let _ = fs::remove_file(&m);
                let _ = fs::remove_file(&e);
                tracing::info!("removed the stale engine {}", path.display());
            }
        }
        Ok(engine)
    }

    /// Removes the entry for `key` (an engine that failed to deserialise).
    pub fn discard(&self, model: &str, key: &EngineKey) {
        let (engine, manifest) = self.paths(model, key);
        let _ = fs::remove_file(manifest);
        let _ = fs::remove_file(engine);
    }

    /// The timing cache for one GPU and TensorRT, shared by every build on it.
    pub fn timing_cache_path(&self, key: &EngineKey) -> PathBuf {
        let gpu: String = key
            .gpu
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir.join(format!(
            "timing-{gpu}-sm{}-trt{}.cache",
            key.compute_capability.replace('.', ""),
            key.tensorrt
        ))
    }

    /// Every readable manifest of `model`, with its path.
    fn entries(&self, model: &str) -> Vec<(PathBuf, Manifest)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let prefix = format!("{model}-");
        dir.filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix))
            })
            .filter_map(|p| {
                let m: Manifest = serde_json::from_str(&fs::read_to_string(&p).ok()?).ok()?;
                (m.model == model).then_some((p, m))
            })
            .collect()
    }
}

/// Writes `bytes` to a temporary file beside `path`, syncs it, renames it
/// over `path` and syncs the folder, so `path` is always whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn key() -> EngineKey {
        EngineKey {
            model_sha256: "d2a7720d".into(),
            tensorrt: "8.2.1".into(),
            gpu: "NVIDIA Tegra X1".into(),
            compute_capability: "5.3".into(),
            precision: Precision::Fp16,
            batch: 4,
            input: [[1, 3, 32, 32], [4, 3, 640, 640], [4, 3, 960, 960]],
            restricted_tactics: true,
        }
    }

    fn manifest(key: EngineKey) -> Manifest {
        Manifest {
            schema: String::new(),
            key,
            model: String::new(),
            engine_sha256: String::new(),
            engine_bytes: 0,
            built_at: "2026-11-23T12:00:00Z".into(),
            build_seconds: 312.0,
            workspace_bytes: 256 << 20,
            device_memory_bytes: 90 << 20,
            check: CheckRecord {
                mean_abs_diff: 0.001,
                max_abs_diff: 0.05,
                cpu_detections: 8,
                engine_detections: 8,
                matched: 8,
            },
        }
    }

    #[test]
    fn every_key_field_changes_the_digest() {
        let base = key();
        let changes: [fn(&mut EngineKey); 8] = [
            |k| k.model_sha256 = "00".into(),
            |k| k.tensorrt = "8.2.3".into(),
            |k| k.gpu = "Orin".into(),
            |k| k.compute_capability = "8.7".into(),
            |k| k.precision = Precision::Fp32,
            |k| k.batch = 1,
            |k| k.input[2] = [4, 3, 1280, 1280],
            |k| k.restricted_tactics = false,
        ];
        let variants: Vec<EngineKey> = changes
            .iter()
            .map(|change| {
                let mut k = base.clone();
                change(&mut k);
                k
            })
            .collect();
        let mut digests: Vec<String> = variants.iter().map(EngineKey::digest).collect();
        digests.push(base.digest());
        let n = digests.len();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), n, "each field must change the digest");
        assert_eq!(base.digest(), key().digest(), "the digest is stable");
        assert_eq!(base.digest().len(), 16);
    }

    #[test]
    fn store_then_lookup_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EngineCache::new(dir.path().join("engines"));
        let plan: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let path = cache.store("ppocr", &plan, manifest(key())).unwrap();
        let hit = cache.lookup("ppocr", &key()).unwrap();
        assert_eq!(hit.plan, plan);
        assert_eq!(hit.path, path);
        assert_eq!(hit.manifest.engine_bytes, 10_000);
        assert_eq!(hit.manifest.schema, MANIFEST_SCHEMA);
        let names: Vec<String> = fs::read_dir(cache.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.iter().all(|n| !n.contains("tmp")), "{names:?}");
        let json: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(path.with_extension("json")).unwrap())
                .unwrap();
        assert_eq!(json["key"]["tensorrt"], "8.2.1");
        assert_eq!(json["key"]["precision"], "fp16");
    }

    #[test]
    fn absent_entry_names_what_changed_since_the_last_build() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EngineCache::new(dir.path());
        let miss = cache.lookup("ppocr", &key()).unwrap_err();
        assert_eq!(miss, Miss::Absent(vec![]));
        cache.store("ppocr", b"engine", manifest(key())).unwrap();
        let mut upgraded = key();
        upgraded.tensorrt = "8.2.3".into();
        let miss = cache.lookup("ppocr", &upgraded).unwrap_err();
        let text = miss.to_string();
        assert!(text.contains("tensorrt: \"8.2.1\" -> \"8.2.3\""), "{text}");
        // The new build replaces the stale one.
        cache
            .store("ppocr", b"engine2", manifest(upgraded.clone()))
            .unwrap();
        assert!(cache.lookup("ppocr", &key()).is_err());
        assert_eq!(cache.lookup("ppocr", &upgraded).unwrap().plan, b"engine2");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn truncated_altered_and_missing_engines_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EngineCache::new(dir.path());
        let plan = vec![7u8; 4096];
        let path = cache.store("m", &plan, manifest(key())).unwrap();

        fs::write(&path, &plan[..1000]).unwrap();
        let miss = cache.lookup("m", &key()).unwrap_err();
        assert!(matches!(miss, Miss::BadEngine(..)), "{miss}");
        assert!(miss.to_string().contains("truncated: 1000 bytes"), "{miss}");

        let mut altered = plan.clone();
        altered[100] = 8;
        fs::write(&path, &altered).unwrap();
        let miss = cache.lookup("m", &key()).unwrap_err();
        assert!(miss.to_string().contains("altered"), "{miss}");

        fs::remove_file(&path).unwrap();
        let miss = cache.lookup("m", &key()).unwrap_err();
        assert!(matches!(miss, Miss::BadEngine(..)), "{miss}");
    }

    #[test]
    fn corrupt_or_foreign_manifests_are_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = EngineCache::new(dir.path());
        let path = cache.store("m", b"plan", manifest(key())).unwrap();
        let manifest_path = path.with_extension("json");

        fs::write(&manifest_path, "{\"schema\": ").unwrap();
        let miss = cache.lookup("m", &key()).unwrap_err();
        assert!(matches!(miss, Miss::BadManifest(..)), "{miss}");

        // A manifest edited to another GPU under this key's name.
        let mut other = manifest(key());
        other.key.gpu = "Orin".into();
        other.schema = MANIFEST_SCHEMA.into();
        fs::write(&manifest_path, serde_json::to_vec(&other).unwrap()).unwrap();
        let miss = cache.lookup("m", &key()).unwrap_err();
        assert!(matches!(miss, Miss::KeyMismatch(..)), "{miss}");
        assert!(miss.to_string().contains("gpu"), "{miss}");

        cache.discard("m", &key());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.engine");
        write_atomic(&target, b"old").unwrap();
        // The temporary name is taken by a folder: the write fails.
        let tmp = dir
            .path()
            .join(format!(".x.engine.tmp-{}", std::process::id()));
        fs::create_dir(&tmp).unwrap();
        assert!(write_atomic(&target, b"new").is_err());
        assert_eq!(fs::read(&target).unwrap(), b"old");
    }

    #[test]
    fn timing_cache_is_per_gpu_and_tensorrt() {
        let cache = EngineCache::new("/e");
        let p = cache.timing_cache_path(&key());
        assert_eq!(
            p,
            Path::new("/e/timing-NVIDIA_Tegra_X1-sm53-trt8.2.1.cache")
        );
    }
}
