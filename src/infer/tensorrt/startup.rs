//! The TensorRT backend's life in the daemon: open the GPU, find a cached
//! engine or build one in a child process while frames run on the CPU,
//! switch over when it is ready. It reads only the config sections it is
//! given ([`Sections`]); `build-engine` (cli/build_engine.rs) builds with
//! the same [`Gpu`].

use std::ffi::c_char;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::background::{BackgroundBuild, Outcome};
use super::cache::{EngineCache, EngineKey};
use super::engine::TrtFactory;
use super::ffi;
use super::libs::{Libraries, SearchPaths};
use super::settings::{self, TensorrtConfig};
use crate::infer::model::LoadedModel;
use crate::infer::{Backend, EngineSlot};

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

impl Sections<'_> {
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

    pub fn factory(&self, config: Sections<'_>, model: &LoadedModel, plan: Vec<u8>) -> TrtFactory {
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
    /// `build` is the command that builds the engine (`edgewatch
    /// build-engine --config FILE`); `switched` is told the backend that
    /// frames leave when they move to the GPU.
    pub fn begin(
        build: std::process::Command,
        config: Sections<'_>,
        model: &LoadedModel,
        engines: &EngineSlot,
        switched: &dyn Fn(&'static str),
    ) -> anyhow::Result<Startup> {
        let mut s = Startup {
            build: None,
            gpu: None,
            started: Instant::now(),
        };
        if config.model.backend != Backend::Tensorrt {
            return Ok(s);
        }
        let gpu = Gpu::open(config.tensorrt)?;
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
        match gpu.cached(config, model) {
            Ok(factory) => {
                let old = engines.switch(Arc::new(factory));
                switched(old);
                tracing::info!("TensorRT engine from the cache: frames run on the GPU");
            }
            Err(why) => {
                let build = BackgroundBuild::spawn(
                    build,
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
        config: Sections<'_>,
        model: &LoadedModel,
        engines: &EngineSlot,
        switched: &dyn Fn(&'static str),
    ) {
        let Some(outcome) = self.build.as_mut().and_then(BackgroundBuild::poll) else {
            return;
        };
        self.build = None;
        let Some(gpu) = &self.gpu else { return };
        let result = match outcome {
            Outcome::Built => gpu.cached(config, model),
            Outcome::Failed(why) => Err(NoEngine::BuildFailed(why)),
        };
        match result {
            Ok(factory) => {
                let old = engines.switch(Arc::new(factory));
                switched(old);
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
