//! The build itself: progress on stderr, SIGTERM stops it at the next
//! step, the new engine is checked against the CPU backend before it is
//! cached.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::Config;
use crate::infer::detector::Detector;
use crate::infer::model::LoadedModel;
use crate::infer::tensorrt::cache::{EngineCache, EngineKey, Manifest, Precision};
use crate::infer::tensorrt::check;
use crate::infer::tensorrt::engine::TrtEngine;
use crate::infer::tensorrt::ffi;
use crate::infer::tensorrt::settings;
use crate::infer::tensorrt::startup::Gpu;
use crate::infer::Engine;
use crate::runtime::inference::tensorrt_sections as sections;

const MIB: u64 = 1 << 20;

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
    let key = gpu.key(sections(config), &model);
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
    let factory = gpu.factory(sections(config), &model, plan_bytes.clone());
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
