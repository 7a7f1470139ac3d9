//! SIGHUP: applies a re-read configuration to the running daemon.

use std::sync::atomic::Ordering;

use crate::config::Config;
use crate::infer::budget::MemoryPlan;
use crate::infer::detector::DetectorSettings;
use crate::infer::model::LoadedModel;
use crate::runtime::inference::detector_settings;

/// Detector settings that workers pick up before their next frame.
pub struct LiveSettings {
    /// Bumped on every successful reload.
    pub generation: std::sync::atomic::AtomicU64,
    /// The settings to use from the next frame.
    pub settings: std::sync::RwLock<DetectorSettings>,
    /// The memory plan the process started with; a reload never outgrows it.
    pub plan: MemoryPlan,
    /// The model the process runs (labels must keep fitting it).
    pub model: LoadedModel,
}

/// Applies a re-read configuration: what workers can take without a new
/// model goes live; what needs a restart is named in the log.
pub fn apply_reload(running: &Config, new: &Config, live: &LiveSettings) {
    let m = (&running.model, &new.model);
    let needs_restart: Vec<&str> = [
        ("model.path", m.0.path != m.1.path),
        ("model.family", m.0.family != m.1.family),
        ("model.backend", m.0.backend != m.1.backend),
        ("model.workers", m.0.workers != m.1.workers),
        ("device", running.device != new.device),
        ("supervise", running.supervise != new.supervise),
        ("telemetry", running.telemetry != new.telemetry),
        // These resize the memory plan, which is fixed for the process.
        ("tiling", running.tiling != new.tiling),
        (
            "memory_budget_mb",
            running.memory_budget_mb != new.memory_budget_mb,
        ),
        ("max_pixels", running.max_pixels != new.max_pixels),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(
            "reload: {} changed; restart edgewatch to apply (running as before for those)",
            needs_restart.join(", ")
        );
    }
    let mut settings = match detector_settings(new, live.plan.max_pixels, &live.model) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("reload rejected, running as before: {e}");
            return;
        }
    };
    settings.tiling = running.tiling.clone();
    *live.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
    live.generation.fetch_add(1, Ordering::SeqCst);
    tracing::info!(
        "configuration reloaded: decode thresholds, max_side and labels apply from the next frame; sources and [mqtt] are applied now"
    );
}
