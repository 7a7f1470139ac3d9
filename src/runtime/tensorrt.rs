//! The TensorRT backend's life in the daemon and in `build-engine`: open the
//! GPU, find a cached engine or build one (in a child process while the
//! daemon serves on the CPU), check it against the CPU, switch over.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::infer::detector::Detector;
use crate::infer::model::LoadedModel;
use crate::infer::tensorrt::background::{BackgroundBuild, Outcome};
use crate::infer::tensorrt::cache::{EngineCache, EngineKey, Manifest, Precision};
use crate::infer::tensorrt::check;
use crate::infer::tensorrt::engine::{TrtEngine, TrtFactory};
use crate::infer::tensorrt::ffi;
use crate::infer::tensorrt::libs::{Libraries, SearchPaths};
use crate::infer::tensorrt::settings::{self, TensorrtConfig};
use crate::infer::{Backend, Engine, EngineSlot};
use crate::telemetry::metrics::Metrics;

const MIB: u64 = 1 << 20;

/// The config sections TensorRT start-up reads: what the engine is built
/// for and where it is cached.
#[derive(Clone, Copy)]
pub struct Sections<'a> {
    /// `[tensorrt]`.
    pub tensorrt: &'a TensorrtConfig,
    /// `[model]`.
    pub model: &'a crate::infer::ModelConfig,
    /// `[tiling]`: the shapes the engine must take.
    pub tiling: &'a crate::infer::tiling::TilingConfig,
    /// `memory_budget_mb`: whether tactics are restricted.
    pub memory_budget_mb: u64,
}

impl<'a> Sections<'a> {
    /// The sections of a whole config.
    pub fn of(config: &'a Config) -> Sections<'a> {
        Sections {
            tensorrt: &config.tensorrt,
            model: &config.model,
            tiling: &config.tiling,
            memory_budget_mb: config.memory_budget_mb,
        }
    }

    /// The input profile for `model` under these sections.
    fn profile(&self, model: &LoadedModel) -> [[u32; 4]; 3] {
        crate::infer::shapes::profile(self.model, self.tiling, model)
    }
}

/// The opened libraries and the GPU they drive.
pub struct Gpu {
    /// Libraries (kept open).
    pub libs: Arc<Libraries>,
    /// What CUDA says about the device.
    pub device: ffi::Device,
    /// Device index.
    pub index: u32,
}

impl Gpu {
    /// Opens TensorRT of the major this binary was compiled for, and the GPU.
    pub fn open(cfg: &TensorrtConfig) -> anyhow::Result<Gpu> {
        let built =
            crate::infer::tensorrt::compiled_version().expect("compiled with the tensorrt feature");
        // SAFETY: returns a constant.
        let abi = unsafe { ffi::ew_trt_abi() };
        anyhow::ensure!(
            abi == ffi::ABI,
            "the TensorRT shim's ABI {abi} is not {} (a stale build: cargo clean -p edgewatch)",
            ffi::ABI
        );
        let libs = Arc::new(Libraries::open(
            &SearchPaths::from_env(),
            &[built.major],
            Some(built),
        )?);
        // SAFETY: Device is plain data, filled by the shim.
        let mut device: ffi::Device = unsafe { std::mem::zeroed() };
        let mut err = [0 as c_char; 1024];
        // SAFETY: api lives in `libs`, which outlives the call.
        let rc = unsafe {
            ffi::ew_trt_device_info(
                &libs.api,
                cfg.device as i32,
                &mut device,
                err.as_mut_ptr(),
                err.len(),
            )
        };
        anyhow::ensure!(
            rc == 0,
            "backend \"tensorrt\": CUDA device {} is not usable: {} (check nvidia-smi or tegrastats, the user's access to /dev/nvhost-* or /dev/nvidia*, and tensorrt.device)",
            cfg.device,
            ffi::text(&err)
        );
        Ok(Gpu {
            libs,
            device,
            index: cfg.device,
        })
    }

    /// GPU name.
    pub fn name(&self) -> String {
        ffi::text(&self.device.name)
    }

    fn cc(&self) -> (u32, u32) {
        (self.device.cc_major as u32, self.device.cc_minor as u32)
    }

    /// The cache key for `config` on this GPU.
    pub fn key(&self, config: Sections<'_>, model: &LoadedModel) -> EngineKey {
        let t = config.tensorrt;
        EngineKey {
            model_sha256: model.info.sha256.clone(),
            tensorrt: self.libs.version.to_string(),
            gpu: self.name(),
            compute_capability: format!("{}.{}", self.cc().0, self.cc().1),
            precision: settings::effective_precision(t.precision, self.cc()),
            batch: config.profile(model)[2][0],
            input: config.profile(model),
            restricted_tactics: settings::restrict_tactics(
                t.tactics,
                config.memory_budget_mb * MIB,
            ),
        }
    }

    fn factory(&self, config: Sections<'_>, model: &LoadedModel, plan: Vec<u8>) -> TrtFactory {
        TrtFactory {
            libs: self.libs.clone(),
            plan: Arc::new(plan),
            device: self.index,
            mapped: settings::use_mapped(
                config.tensorrt.host_memory,
                self.device.integrated != 0,
                self.device.can_map_host_memory != 0,
            ),
            max_dims: config.profile(model)[2],
        }
    }

    /// The cached engine for `config`, loaded once to prove it deserialises;
    /// or why there is none (an entry that does not deserialise is removed
    /// so it gets rebuilt; one that failed for any other reason is kept).
    pub fn cached(
        &self,
        config: Sections<'_>,
        model: &LoadedModel,
    ) -> Result<TrtFactory, NoEngine> {
        let cache = EngineCache::new(&config.tensorrt.engines);
        let key = self.key(config, model);
        let hit = cache
            .lookup(&model.info.name, &key)
            .map_err(|m| NoEngine::Missing(m.to_string()))?;
        let factory = self.factory(config, model, hit.plan);
        match factory.try_load() {
            Ok(_) => Ok(factory),
            // Only a file that does not deserialise is thrown away: a
            // failed allocation or a driver hiccup would otherwise cost a
            // Nano a 10-30 minute rebuild on every start.
            Err(e) if e.bad_file => {
                cache.discard(&model.info.name, &key);
                Err(NoEngine::Removed {
                    path: hit.path.clone(),
                    reason: e.to_string(),
                })
            }
            Err(e) => Err(NoEngine::Kept {
                path: hit.path.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Why no cached engine is used.
#[derive(Debug, thiserror::Error)]
pub enum NoEngine {
    /// None in the cache for this key (the cache says why).
    #[error("{0}")]
    Missing(String),
    /// The file does not deserialise: removed, to be rebuilt.
    #[error("{} does not load ({reason}); removed, it will be rebuilt", path.display())]
    Removed {
        /// The engine file.
        path: std::path::PathBuf,
        /// What TensorRT said.
        reason: String,
    },
    /// It did not load for another reason: kept, tried again next start.
    #[error("{} was not loaded ({reason}); the file is kept and tried again at the next start", path.display())]
    Kept {
        /// The engine file.
        path: std::path::PathBuf,
        /// What TensorRT said.
        reason: String,
    },
    /// The background build failed.
    #[error("{0}")]
    BuildFailed(String),
}

/// The daemon's TensorRT state: nothing to do, or a build to watch.
pub struct Startup {
    build: Option<BackgroundBuild>,
    gpu: Option<Gpu>,
    started: Instant,
}

impl Startup {
    /// At start-up: a valid cached engine is used at once; otherwise frames
    /// run on the CPU and a child process builds the engine.
    pub fn begin(
        config_path: &Path,
        config: &Config,
        model: &LoadedModel,
        engines: &EngineSlot,
        metrics: &Metrics,
    ) -> anyhow::Result<Startup> {
        let mut s = Startup {
            build: None,
            gpu: None,
            started: Instant::now(),
        };
        if config.model.backend != Backend::Tensorrt {
            return Ok(s);
        }
        let gpu = Gpu::open(&config.tensorrt)?;
        tracing::info!(
            "TensorRT {} on {} (compute {}.{}, {}), {}",
            gpu.libs.version,
            gpu.name(),
            gpu.device.cc_major,
            gpu.device.cc_minor,
            if gpu.device.integrated != 0 {
                "integrated"
            } else {
                "discrete"
            },
            gpu.libs.paths[0]
        );
        match gpu.cached(Sections::of(config), model) {
            Ok(factory) => {
                let old = engines.switch(Arc::new(factory));
                metrics.backend_switched(old, Backend::Tensorrt.label());
                tracing::info!("TensorRT engine from the cache: frames run on the GPU");
            }
            Err(why) => {
                let exe = std::env::current_exe()
                    .context("cannot find the edgewatch binary to build the engine")?;
                let mut cmd = std::process::Command::new(exe);
                cmd.arg("build-engine").arg("--config").arg(config_path);
                let build = BackgroundBuild::spawn(
                    cmd,
                    Duration::from_secs(config.tensorrt.build_timeout_s),
                )
                .context("cannot start the engine build")?;
                tracing::warn!(
                    "no usable TensorRT engine: {why}. Serving on the CPU backend meanwhile; building one at low priority (pid {})",
                    build.pid()
                );
                s.build = Some(build);
            }
        }
        s.gpu = Some(gpu);
        Ok(s)
    }

    /// Called from the daemon's loop: switches over when the build is done.
    pub fn poll(
        &mut self,
        config: &Config,
        model: &LoadedModel,
        engines: &EngineSlot,
        metrics: &Metrics,
    ) {
        let Some(outcome) = self.build.as_mut().and_then(BackgroundBuild::poll) else {
            return;
        };
        self.build = None;
        let Some(gpu) = &self.gpu else { return };
        let result = match outcome {
            Outcome::Built => gpu.cached(Sections::of(config), model),
            Outcome::Failed(why) => Err(NoEngine::BuildFailed(why)),
        };
        match result {
            Ok(factory) => {
                let old = engines.switch(Arc::new(factory));
                metrics.backend_switched(old, Backend::Tensorrt.label());
                tracing::info!(
                    "TensorRT engine ready after {} s: frames move from {old} to tensorrt",
                    self.started.elapsed().as_secs()
                );
            }
            Err(why) => tracing::error!(
                "TensorRT engine not available: {why}. Staying on the CPU backend; run edgewatch build-engine --config FILE to retry and watch its progress"
            ),
        }
    }

    /// Stops a running build.
    pub fn stop(&mut self) {
        if let Some(b) = self.build.take() {
            b.stop();
        }
    }
}

/// Set by SIGTERM/SIGINT in `build-engine`: the build stops at its next step.
static CANCEL: AtomicBool = AtomicBool::new(false);

struct ProgressState {
    started: Instant,
    last: std::sync::Mutex<Instant>,
}

unsafe extern "C" fn on_progress(
    user: *mut c_void,
    phase: *const c_char,
    step: i32,
    steps: i32,
) -> i32 {
    // SAFETY: `user` is the ProgressState that outlives the build call;
    // `phase` is a NUL-terminated string for this call.
    let (state, phase) = unsafe {
        (
            &*(user as *const ProgressState),
            CStr::from_ptr(phase).to_string_lossy(),
        )
    };
    let now = Instant::now();
    let mut last = state.last.lock().unwrap_or_else(|p| p.into_inner());
    let edge = step == 0 || step == steps;
    if edge || now.duration_since(*last) >= Duration::from_secs(10) {
        *last = now;
        let at = state.started.elapsed().as_secs();
        if steps > 0 {
            eprintln!("build-engine: [{at:>4} s] {phase}: {step}/{steps}");
        } else {
            eprintln!("build-engine: [{at:>4} s] {phase}");
        }
    }
    i32::from(CANCEL.load(Ordering::SeqCst))
}

/// `edgewatch build-engine`: builds, checks and caches the engine for
/// `config`, printing progress and the engine's memory needs.
pub fn build_engine(config: &Config) -> anyhow::Result<()> {
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            signal_hook::low_level::register(sig, || CANCEL.store(true, Ordering::SeqCst))
                .context("cannot install the signal handler")?;
        }
    }
    let t = &config.tensorrt;
    let model = LoadedModel::load(
        &config.model,
        crate::infer::shapes::warm(&config.model, &config.tiling),
    )?;
    let gpu = Gpu::open(t)?;
    let key = gpu.key(Sections::of(config), &model);
    let cache = EngineCache::new(&t.engines);
    eprintln!(
        "build-engine: {} on {} (compute {}), TensorRT {}, {}, profile {:?} .. {:?}, tactics {}",
        model.info.name,
        key.gpu,
        key.compute_capability,
        key.tensorrt,
        key.precision.name(),
        key.input[0],
        key.input[2],
        if key.restricted_tactics {
            "restricted (no cuBLAS/cuDNN)"
        } else {
            "all"
        }
    );
    let onnx_bytes = std::fs::metadata(&config.model.path)?.len();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (ram, swap) = settings::free_memory(&meminfo).unwrap_or((u64::MAX / 4, 0));
    // Under systemd's MemoryMax the cgroup, not the machine, is the limit
    // (swap included: memory.max counts only RAM, so swap stays usable).
    let ram = settings::cgroup_room_here().map_or(ram, |room| ram.min(room));
    let (workspace, note) = settings::fit_workspace(
        t.workspace_mb * MIB,
        settings::build_overhead(key.restricted_tactics, onnx_bytes),
        ram,
        swap,
    )?;
    if let Some(note) = note {
        eprintln!("build-engine: {note}");
    }
    let timing_path = cache.timing_cache_path(&key);
    let timing = std::fs::read(&timing_path).unwrap_or_default();
    let onnx = CString::new(config.model.path.as_os_str().as_encoded_bytes())?;
    let params = ffi::BuildParams {
        onnx_path: onnx.as_ptr(),
        device: gpu.index as i32,
        fp16: i32::from(key.precision == Precision::Fp16),
        workspace_bytes: workspace,
        restrict_tactics: i32::from(key.restricted_tactics),
        min_dims: key.input[0].map(|d| d as i32),
        opt_dims: key.input[1].map(|d| d as i32),
        max_dims: key.input[2].map(|d| d as i32),
        timing_cache: if timing.is_empty() {
            std::ptr::null()
        } else {
            timing.as_ptr().cast()
        },
        timing_cache_len: timing.len() as u64,
    };
    let state = ProgressState {
        started: Instant::now(),
        last: std::sync::Mutex::new(Instant::now()),
    };
    // TensorRT before 10 reports no steps: a line every 30 s says it lives.
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let (done, started) = (done.clone(), state.started);
        std::thread::spawn(move || {
            let mut next = 30;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if started.elapsed().as_secs() >= next {
                    eprintln!("build-engine: still building after {next} s");
                    next += 30;
                }
            }
        })
    };
    // SAFETY: Blob is plain data; the shim fills it.
    let (mut plan, mut tc): (ffi::Blob, ffi::Blob) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    let mut err = [0 as c_char; 2048];
    // SAFETY: every pointer outlives the call; the blobs are freed below.
    let rc = unsafe {
        ffi::ew_trt_build(
            &gpu.libs.api,
            &params,
            Some(on_progress),
            &state as *const ProgressState as *mut c_void,
            &mut plan,
            &mut tc,
            err.as_mut_ptr(),
            err.len(),
        )
    };
    done.store(true, Ordering::SeqCst);
    let _ = ticker.join();
    anyhow::ensure!(rc == 0, "engine build failed: {}", ffi::text(&err));
    let copy = |b: &ffi::Blob| -> Vec<u8> {
        if b.data.is_null() {
            return Vec::new();
        }
        // SAFETY: the shim's blob holds `len` bytes until freed.
        unsafe { std::slice::from_raw_parts(b.data.cast::<u8>(), b.len as usize) }.to_vec()
    };
    let (plan_bytes, timing_bytes) = (copy(&plan), copy(&tc));
    // SAFETY: each blob is freed once.
    unsafe {
        ffi::ew_trt_blob_free(&mut plan);
        ffi::ew_trt_blob_free(&mut tc);
    }
    let build_seconds = state.started.elapsed().as_secs_f64();
    eprintln!(
        "build-engine: built in {build_seconds:.0} s, {} MiB; checking it against the CPU backend",
        plan_bytes.len() as u64 / MIB
    );
    let factory = gpu.factory(Sections::of(config), &model, plan_bytes.clone());
    let (gpu_engine, io) = TrtEngine::load(
        gpu.libs.clone(),
        &plan_bytes,
        gpu.index,
        factory.mapped,
        factory.max_dims,
    )
    .map_err(|e| anyhow::anyhow!("the new engine does not load: {e}"))?;
    let record = reference_check(config, &model, gpu_engine, &key)?;
    let manifest = Manifest {
        schema: String::new(),
        key: key.clone(),
        model: String::new(),
        engine_sha256: String::new(),
        engine_bytes: 0,
        built_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        build_seconds,
        workspace_bytes: workspace,
        device_memory_bytes: io.device_memory_bytes,
        check: record.clone(),
    };
    let path = cache.store(&model.info.name, &plan_bytes, manifest)?;
    if !timing_bytes.is_empty() {
        if let Err(e) = crate::infer::tensorrt::cache::write_atomic(&timing_path, &timing_bytes) {
            tracing::warn!("timing cache not saved to {}: {e}", timing_path.display());
        }
    }
    let restricted = key.restricted_tactics;
    eprintln!(
        "build-engine: {} ready. Memory: engine {} MiB + activations {} MiB + buffers {} MiB on the GPU, about {} MiB of TensorRT runtime; check: mean difference {:.4}, {}/{} detections matched",
        path.display(),
        plan_bytes.len() as u64 / MIB,
        io.device_memory_bytes / MIB,
        io.buffer_bytes / MIB,
        if restricted { settings::RUNTIME_RESTRICTED_BYTES } else { settings::RUNTIME_FULL_BYTES } / MIB,
        record.mean_abs_diff,
        record.matched,
        record.cpu_detections.max(record.engine_detections)
    );
    Ok(())
}

/// Runs the reference frame through the new engine and the CPU backend.
fn reference_check(
    config: &Config,
    model: &LoadedModel,
    mut gpu_engine: TrtEngine,
    key: &EngineKey,
) -> anyhow::Result<crate::infer::tensorrt::cache::CheckRecord> {
    let t = &config.tensorrt;
    let image = match &t.reference_image {
        Some(p) => image::open(p)
            .with_context(|| format!("tensorrt.reference_image {}", p.display()))?
            .to_rgb8(),
        None => check::test_card(),
    };
    let (mean, std, bgr) = config.model.normalisation();
    let mut pre = crate::infer::preprocess::Preprocessor::with_normalisation(mean, std, bgr);
    let [_, _, h, w] = key.input[1];
    let tensor = pre.to_tensor(&image, w, h);
    let mut cpu_engine = model.tract.engine()?;
    let cpu_out = cpu_engine.run(tensor.clone())?;
    let gpu_out = gpu_engine.run(tensor)?;
    let settings = crate::runtime::inference::detector_settings(config, u64::MAX / 4, model)?;
    let cpu_dets = Detector::new(Box::new(cpu_engine), settings.clone())
        .detect_image(&image)?
        .detections;
    // The detector owns its engine; the GPU one is loaded again for it.
    let gpu_dets = Detector::new(Box::new(gpu_engine), settings)
        .detect_image(&image)?
        .detections;
    check::compare(
        &cpu_out,
        &gpu_out,
        &cpu_dets,
        &gpu_dets,
        t.max_mean_diff,
        t.min_agreement,
    )
    .map_err(|(rec, why)| {
        anyhow::anyhow!(
            "the engine failed the check against the CPU backend and is not used: {why} ({rec:?})"
        )
    })
}
