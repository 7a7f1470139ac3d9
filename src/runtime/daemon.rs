//! The daemon: folder sources → inference workers → MQTT, until told to stop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::bounded;

use crate::base::heartbeats::{Heartbeats, Notifier, Stage};
use crate::base::restart::run_restarting;
use crate::base::shutdown::Shutdown;
use crate::config::Config;
use crate::events::config::Publish;
use crate::runtime::inference::{detector_settings, load_model};
use crate::runtime::reload::{apply_reload, LiveSettings};
use crate::runtime::workers::{WorkerPool, WorkerShared};
use crate::sink::mqtt::MqttSink;
use crate::source::folder::FolderSource;
use crate::source::latest::{FramePool, LatestFrame};
use crate::source::stream::{self, CaptureError, FrameOutput, Open, StreamSettings};
use crate::source::{Built, Job, SourceConfig, STREAM_SPARE_FRAMES};

/// How long stopping waits for stages before giving up on a hung one.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Runs until `stop` is set, then finishes the frames in flight, waits briefly
/// for broker acknowledgements and disconnects. `reload` (SIGHUP) re-reads
/// `config_path`. `seams` is `Seams::default()` but in tests.
pub fn run(
    config_path: &std::path::Path,
    config: Config,
    signalled: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    seams: crate::runtime::seams::Seams,
) -> anyhow::Result<()> {
    let shutdown = Shutdown::new();
    let started = std::time::Instant::now();
    let (mut model, plan) = load_model(&config)?;
    model.engines = seams.engines(model.engines);
    let workers = plan.workers;
    let reader = crate::runtime::inference::load_reader(&config, &model, workers)?;
    if let Some(note) = &config.plan_fitted {
        tracing::info!("{note}");
    }
    tracing::info!("{}", plan.summary());
    let mqtt_cfg = config
        .mqtt
        .clone()
        .context("[mqtt] is required to run the daemon")?;
    let heartbeats = Arc::new(Heartbeats::default());
    let metrics = Arc::new(crate::telemetry::metrics::Metrics::new(&model.info));
    let stage_timeout = Duration::from_secs(config.supervise.stall_timeout_s);
    let infer_timeout = Duration::from_secs(config.supervise.infer_timeout_s);
    let frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = Arc::new(
        MqttSink::start(
            &mqtt_cfg,
            &config.device,
            Some(heartbeats.register("mqtt", stage_timeout)),
        )
        .map_err(|e| {
            if e.is_config_error() {
                anyhow::Error::new(crate::base::issue::Issue::new("mqtt.outbox", e.to_string()))
            } else {
                anyhow::Error::new(e)
            }
        })?,
    );

    let (tx, rx) = bounded::<Job>(workers * 2);
    let scenes = Arc::new(crate::events::scene::Scenes::new(&config.device));
    let source_ctx = SourceContext {
        scenes: scenes.clone(),
        tx: tx.clone(),
        heartbeats: heartbeats.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        supervise: config.supervise.clone(),
        stall: stage_timeout,
        workers,
        max_pixels: plan.max_pixels,
    };
    let mut sources = RunningSources::default();
    for source in &config.sources {
        sources.start(source, &source_ctx)?;
    }
    announce(&sink, &mqtt_cfg, &config);
    drop(tx);

    let settings = detector_settings(&config, plan.max_pixels, &model).map_err(|e| e.issue())?;
    let live = Arc::new(LiveSettings {
        generation: std::sync::atomic::AtomicU64::new(0),
        settings: std::sync::RwLock::new(settings.clone()),
        plan: plan.clone(),
        model: model.clone(),
    });
    let engines = Arc::new(crate::infer::EngineSlot::new(model.engines.clone()));
    #[cfg(feature = "tensorrt")]
    let switched =
        |old: &'static str| metrics.backend_switched(old, crate::infer::Backend::Tensorrt.label());
    #[cfg(feature = "tensorrt")]
    let mut gpu = crate::infer::tensorrt::startup::Startup::begin(
        build_engine_command(config_path)?,
        crate::runtime::inference::tensorrt_sections(&config),
        &model,
        &engines,
        &switched,
    )?;
    let mut pool = WorkerPool::start(
        WorkerShared {
            rx,
            sink: sink.clone(),
            shutdown: shutdown.clone(),
            device: config.device.clone(),
            model: model.clone(),
            engines: engines.clone(),
            live: live.clone(),
            metrics: metrics.clone(),
            supervise: config.supervise.clone(),
            frames: frames.clone(),
            heartbeats: heartbeats.clone(),
            infer_timeout,
            scenes: scenes.clone(),
            reader,
        },
        workers,
    )?;

    let telemetry = match &config.telemetry.listen {
        Some(listen) => Some(crate::telemetry::http::serve(
            listen,
            crate::telemetry::http::Probe {
                metrics: metrics.clone(),
                heartbeats: heartbeats.clone(),
                sink: sink.clone(),
            },
            shutdown.clone(),
        )?),
        None => None,
    };
    // Ready only once everything that can stop the start has started.
    tracing::info!(
        "edgewatch ready in {} ms: model {} ({}, {workers} worker(s)), {} source(s), broker {}",
        started.elapsed().as_millis(),
        model.info.name,
        engines.current().1.label(),
        config.sources.len(),
        crate::sink::mqtt::redacted(&mqtt_cfg.url)
    );
    if let Some(choice) = &config.model.backend_choice {
        tracing::info!("{choice}");
    }
    let mut notifier = Notifier::from_env();
    let summary = |since: std::time::Instant, before: u64| {
        let n = frames.load(Ordering::Relaxed);
        let rate = (n - before) as f64 / since.elapsed().as_secs_f64().max(1e-3);
        let (depth, _) = sink.depth();
        (n, format!("{n} frames ({rate:.1}/s), outbox {depth}"))
    };
    notifier.ready(&summary(std::time::Instant::now(), 0).1);
    let (mut window_start, mut window_frames) = (std::time::Instant::now(), 0);
    while !shutdown.is_stopping() {
        if signalled.load(Ordering::SeqCst) {
            shutdown.stop();
            break;
        }
        // Before the watchdog check: a hung worker that can be replaced in
        // place does not cost the process a restart.
        pool.replace_hung();
        #[cfg(feature = "tensorrt")]
        gpu.poll(
            crate::runtime::inference::tensorrt_sections(&config),
            &model,
            &engines,
            &switched,
        );
        notifier.tick(&heartbeats);
        if shutdown.fatal().is_some() {
            shutdown.stop();
            break;
        }
        if reload.swap(false, Ordering::SeqCst) {
            tracing::info!("SIGHUP: re-reading {}", config_path.display());
            match Config::load(config_path, crate::config::Purpose::Run) {
                Ok(new) => {
                    apply_reload(&config, &new, &live);
                    sources.reconcile(&new.sources, &source_ctx);
                    if let Some(m) = &new.mqtt {
                        announce(&sink, m, &new);
                        match sink.reconfigure(m) {
                            Ok(keys) if !keys.is_empty() => tracing::warn!(
                                "reload: {} changed; restart edgewatch to apply (the outbox stays where it is)",
                                keys.join(", ")
                            ),
                            Ok(_) => {}
                            Err(e) => tracing::error!("reload: [mqtt] not applied: {e}"),
                        }
                    }
                }
                Err(e) => tracing::error!(
                    "reload failed, keeping the running configuration: {}",
                    e.to_string().replace('\n', "; ")
                ),
            }
        }
        if window_start.elapsed() >= Duration::from_secs(5) {
            let (n, line) = summary(window_start, window_frames);
            notifier.status(&line);
            (window_start, window_frames) = (std::time::Instant::now(), n);
        }
        shutdown.sleep(Duration::from_millis(100));
    }
    notifier.stopping();
    #[cfg(feature = "tensorrt")]
    gpu.stop();
    tracing::info!("stopping: finishing frames in flight");
    // A hung stage must not hold the process past systemd's stop timeout.
    let deadline = std::time::Instant::now() + STOP_TIMEOUT;
    let mut stuck = 0;
    sources.stop_all();
    drop(source_ctx);
    for t in sources
        .into_handles()
        .into_iter()
        .chain(pool.into_handles())
    {
        if !join_by(t, deadline) {
            stuck += 1;
        }
    }
    // The objects tracked end with the process: subscribers are not left
    // with a `new` that never ends, and the retained counts read 0.
    for o in scenes.finish_all() {
        if let Err(e) = sink.publish_to(&o.source, &o.leaf, &o.payload, o.retain, || false) {
            tracing::warn!(source = %o.source, "stopping: a {} message is lost: {e}", o.kind);
        }
    }
    sink.shutdown(Duration::from_secs(5));
    if let Some(t) = telemetry {
        let _ = t.join();
    }
    if let Some(why) = shutdown.fatal() {
        anyhow::bail!("{why}");
    }
    if stuck > 0 {
        anyhow::bail!(
            "{stuck} stage(s) did not stop within {} s (hung); exiting without them",
            STOP_TIMEOUT.as_secs()
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Announces the stream sources to Home Assistant, or withdraws them.
fn announce(sink: &MqttSink, mqtt: &crate::sink::mqtt::MqttConfig, config: &Config) {
    let streams: Vec<String> = if mqtt.homeassistant {
        config
            .sources
            .iter()
            .filter(|s| s.scene().is_some_and(|c| c.publishes(Publish::Events)))
            .map(|s| s.name().to_string())
            .collect()
    } else {
        Vec::new()
    };
    sink.announce(crate::sink::homeassistant::discovery(
        &mqtt.homeassistant_prefix,
        &mqtt.topic_prefix,
        &config.device,
        &streams,
    ));
}

/// What every source thread needs from the daemon.
struct SourceContext {
    /// Every stream's tracker.
    scenes: Arc<crate::events::scene::Scenes>,
    tx: crossbeam_channel::Sender<Job>,
    heartbeats: Arc<Heartbeats>,
    metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// The daemon's stop; each source runs under a child of it.
    shutdown: Shutdown,
    supervise: crate::base::restart::SuperviseConfig,
    stall: Duration,
    /// Inference workers (camera frames in flight at once).
    workers: usize,
    /// Largest frame the memory plan admits.
    max_pixels: u64,
}

/// One running source: its configuration, its own stop, its thread.
struct RunningSource {
    config: SourceConfig,
    stop: Shutdown,
    stage: Arc<crate::base::heartbeats::Stage>,
    handle: JoinHandle<()>,
}

/// The sources the daemon runs; a reload adds, removes and restarts them by name.
#[derive(Default)]
struct RunningSources {
    running: Vec<RunningSource>,
}

impl RunningSources {
    fn start(&mut self, source: &SourceConfig, ctx: &SourceContext) -> anyhow::Result<()> {
        let name = source.name().to_string();
        let stage = format!("source:{name}");
        let own_stop = ctx.shutdown.child();
        let mut body: SourceBody = match source.build(ctx.max_pixels)? {
            Built::Folder(f) => {
                // Opened here so a folder that cannot be used is reported at
                // once (at start-up that stops the daemon); later failures
                // are restarted.
                let mut first = Some(FolderSource::new(
                    f.clone(),
                    ctx.tx.clone(),
                    own_stop.clone(),
                )?);
                let (tx, stop) = (ctx.tx.clone(), own_stop.clone());
                Box::new(move |beat| {
                    let src = match first.take() {
                        Some(s) => s,
                        None => FolderSource::new(f.clone(), tx.clone(), stop.clone())
                            .map_err(|e| e.to_string())?,
                    };
                    src.with_heartbeat(beat.clone())
                        .run()
                        .map_err(|e| e.to_string())
                })
            }
            Built::Stream(plan) => {
                ctx.scenes.configure(&name, plan.scene, plan.silent_after);
                stream_body(plan.opener, plan.settings, ctx, own_stop.clone())
            }
        };
        let beat = ctx.heartbeats.register(stage.clone(), ctx.stall);
        let (stop, metrics, supervise, thread_beat, heartbeats) = (
            own_stop.clone(),
            ctx.metrics.clone(),
            ctx.supervise.clone(),
            beat.clone(),
            ctx.heartbeats.clone(),
        );
        let handle = std::thread::Builder::new()
            .name(format!("src-{name}"))
            .spawn(move || {
                run_restarting(
                    &thread_beat,
                    &supervise,
                    &stop,
                    &|| metrics.stage_restarted(&stage),
                    || body(&thread_beat),
                );
                // A source that finished (a replay file that ended) is not hung.
                if !stop.is_stopping() {
                    heartbeats.remove(&thread_beat);
                }
            })?;
        self.running.push(RunningSource {
            config: source.clone(),
            stop: own_stop,
            stage: beat,
            handle,
        });
        Ok(())
    }

    /// Stops sources that are gone or changed, starts new and changed ones.
    fn reconcile(&mut self, wanted: &[SourceConfig], ctx: &SourceContext) {
        let (keep, drop): (Vec<RunningSource>, Vec<RunningSource>) =
            std::mem::take(&mut self.running)
                .into_iter()
                .partition(|r| wanted.contains(&r.config));
        self.running = keep;
        for old in drop {
            let name = old.config.name().to_string();
            if !wanted
                .iter()
                .any(|w| w.name() == name && w.scene().is_some())
            {
                ctx.scenes.remove(&name);
            }
            old.stop.stop();
            let stopped = join_by(old.handle, std::time::Instant::now() + STOP_TIMEOUT);
            ctx.heartbeats.remove(&old.stage);
            if stopped {
                tracing::info!(source = %name, "reload: source {name} stopped");
            } else {
                tracing::error!(source = %name, "reload: source {name} did not stop (hung); left behind");
            }
        }
        for source in wanted {
            if self.running.iter().any(|r| &r.config == source) {
                continue;
            }
            let name = source.name().to_string();
            match self.start(source, ctx) {
                Ok(()) => tracing::info!(source = %name, "reload: source {name} started"),
                Err(e) => {
                    tracing::error!(source = %name, "reload: source {name} cannot start: {e:#}")
                }
            }
        }
    }

    fn stop_all(&self) {
        for r in &self.running {
            r.stop.stop();
        }
    }

    fn into_handles(self) -> Vec<JoinHandle<()>> {
        self.running.into_iter().map(|r| r.handle).collect()
    }
}

/// What a source thread runs, restarted in place when it fails.
type SourceBody = Box<dyn FnMut(&Arc<Stage>) -> Result<(), String> + Send>;

/// The body of a camera or replay source's thread: streams until stopped.
/// A device that cannot work with its config (wrong format, too large) is
/// reported and retried slowly, so the rest of the daemon keeps serving and a
/// swapped camera is picked up.
fn stream_body(
    mut opener: Box<dyn Open>,
    settings: StreamSettings,
    ctx: &SourceContext,
    stop: Shutdown,
) -> SourceBody {
    let latest = LatestFrame::new(ctx.workers);
    ctx.metrics.camera(&settings.name, latest.clone());
    let out = FrameOutput {
        latest,
        pool: FramePool::new(ctx.workers + STREAM_SPARE_FRAMES as usize),
        tx: ctx.tx.clone(),
    };
    Box::new(move |beat| {
        let mut reported = String::new();
        loop {
            match stream::run(opener.as_mut(), &settings, &out, &stop, Some(beat.as_ref())) {
                Ok(()) => return Ok(()),
                Err(e @ CaptureError::Unusable { .. }) => {
                    let text = e.to_string();
                    if text != reported {
                        tracing::error!(source = %settings.name, "camera {}: {text}; retrying every {} s", settings.name, settings.reconnect_max.as_secs());
                        reported = text;
                    }
                    if stop.sleep_beating(
                        settings.reconnect_max,
                        Duration::from_millis(500),
                        &|| beat.beat(),
                    ) {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    })
}

/// Joins `t` if it finishes by `deadline`; false when it is still running
/// (hung): it is left behind, so a stuck stage cannot hold the stop past
/// systemd's timeout.
fn join_by(t: JoinHandle<()>, deadline: std::time::Instant) -> bool {
    while !t.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let finished = t.is_finished();
    if finished {
        let _ = t.join();
    }
    finished
}

/// `edgewatch build-engine --config FILE`, run by this same binary.
#[cfg(feature = "tensorrt")]
fn build_engine_command(config_path: &std::path::Path) -> anyhow::Result<std::process::Command> {
    let exe =
        std::env::current_exe().context("cannot find the edgewatch binary to build the engine")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("build-engine").arg("--config").arg(config_path);
    Ok(cmd)
}
