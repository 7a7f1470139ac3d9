//! The inference workers: each takes jobs (files, camera frames) from the
//! sources' queue, detects, and publishes. A worker that fails is restarted
//! in place with back-off; one hung inside a model call (which cannot be
//! interrupted) is abandoned and replaced by a fresh worker.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::base::heartbeats::{Heartbeats, Stage};
use crate::base::restart::{run_restarting, RestartWindow, SuperviseConfig};
use crate::base::shutdown::Shutdown;
use crate::events::config::Publish;
use crate::events::scene::{Outgoing, Scenes};
use crate::infer::detector::Detector;
use crate::infer::model::{LoadedModel, ModelInfo};
use crate::infer::EngineSlot;
use crate::runtime::reload::LiveSettings;
use crate::sink::mqtt::MqttSink;
use crate::sink::payload::Message;
use crate::source::folder::FolderJob;
use crate::source::latest::FrameTicket;
use crate::source::Job;
use crate::telemetry::metrics::Metrics;

/// What every worker shares.
pub struct WorkerShared {
    /// The sources' queue.
    pub rx: Receiver<Job>,
    /// The publisher.
    pub sink: Arc<MqttSink>,
    /// The daemon's stop; failed when workers hang too often.
    pub shutdown: Shutdown,
    /// Device name for messages.
    pub device: String,
    /// The loaded model (identity, labels, the CPU plan).
    pub model: LoadedModel,
    /// Where workers take their engines from (switched when a TensorRT
    /// engine becomes ready).
    pub engines: Arc<EngineSlot>,
    /// Settings a reload changes.
    pub live: Arc<LiveSettings>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Restart limits.
    pub supervise: SuperviseConfig,
    /// Jobs done, for the status line.
    pub frames: Arc<AtomicU64>,
    /// Stage heartbeats.
    pub heartbeats: Arc<Heartbeats>,
    /// A worker silent this long is hung.
    pub infer_timeout: Duration,
    /// Every stream's tracker.
    pub scenes: Arc<Scenes>,
    /// The recognizer run on the boxes' crops (`[read]`).
    pub reader: Option<Arc<crate::read::ReadModel>>,
}

struct Worker {
    index: usize,
    stage: Arc<Stage>,
    /// Set when the worker was replaced: should its model call ever return,
    /// it exits instead of taking more jobs.
    retired: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The running workers, and those abandoned while hung.
pub struct WorkerPool {
    shared: Arc<WorkerShared>,
    workers: Vec<Worker>,
    abandoned: Vec<Worker>,
    /// When workers were replaced, within the restart window.
    replaced: RestartWindow,
    /// A hang already reported as one that needs a process restart.
    reported: bool,
}

impl WorkerPool {
    /// Starts `n` workers.
    pub fn start(shared: WorkerShared, n: usize) -> std::io::Result<WorkerPool> {
        let shared = Arc::new(shared);
        let workers = (0..n)
            .map(|i| spawn(&shared, i))
            .collect::<std::io::Result<Vec<_>>>()?;
        let replaced = RestartWindow::new(&shared.supervise);
        Ok(WorkerPool {
            shared,
            workers,
            abandoned: Vec::new(),
            replaced,
            reported: false,
        })
    }

    /// Replaces each worker silent for longer than `infer_timeout`. Its
    /// thread cannot be stopped, so it is abandoned and keeps its memory: at
    /// most one abandoned worker may still be hung. A second hang leaves the
    /// stage stalled, so the watchdog ping is withheld and systemd restarts
    /// the process; so does replacing more than `max_restarts` times within
    /// `restart_window_s`.
    pub fn replace_hung(&mut self) {
        self.abandoned.retain(|w| !w.handle.is_finished());
        let shared = self.shared.clone();
        for slot in 0..self.workers.len() {
            let silent = self.workers[slot].stage.silent_for();
            if silent <= shared.infer_timeout {
                continue;
            }
            let name = self.workers[slot].stage.name().to_string();
            if let Some(old) = self.abandoned.first() {
                if !self.reported {
                    tracing::error!(
                        stage = %name,
                        "stage {name} hung for {} s, and {} (hung earlier) has not come back: not replacing it, so memory stays within the plan; systemd will restart edgewatch",
                        silent.as_secs(),
                        old.stage.name()
                    );
                    self.reported = true;
                }
                continue;
            }
            if !self.replaced.allow(Instant::now()) {
                let why = format!(
                    "inference hung {} times within {} s (limit {}); exiting so systemd restarts edgewatch",
                    self.replaced.recent(),
                    self.replaced.window().as_secs(),
                    self.replaced.max_restarts()
                );
                tracing::error!(stage = %name, "{why}");
                shared.shutdown.fail(why);
                return;
            }
            let fresh = match spawn(&shared, self.workers[slot].index) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!(stage = %name, "stage {name} hung, and no thread can be started to replace it: {e}");
                    continue;
                }
            };
            let old = std::mem::replace(&mut self.workers[slot], fresh);
            old.retired.store(true, Ordering::SeqCst);
            shared.heartbeats.remove(&old.stage);
            shared.metrics.stage_restarted(&name);
            tracing::warn!(
                stage = %name,
                "stage {name} hung for {} s inside the model; restarted in place with a fresh engine (the hung thread is abandoned; a file it held is re-queued at the next start)",
                silent.as_secs()
            );
            self.abandoned.push(old);
        }
    }

    /// Every worker thread, abandoned ones included, for the stop.
    pub fn into_handles(self) -> Vec<JoinHandle<()>> {
        self.workers
            .into_iter()
            .chain(self.abandoned)
            .map(|w| w.handle)
            .collect()
    }
}

fn spawn(shared: &Arc<WorkerShared>, index: usize) -> std::io::Result<Worker> {
    let name = format!("infer-{index}");
    let stage = shared
        .heartbeats
        .register(name.clone(), shared.infer_timeout);
    let retired = Arc::new(AtomicBool::new(false));
    let (s, beat, quit) = (shared.clone(), stage.clone(), retired.clone());
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            run_restarting(
                &beat,
                &s.supervise,
                &s.shutdown,
                &|| s.metrics.stage_restarted(&name),
                || work(&s, &beat, &quit),
            )
        })?;
    Ok(Worker {
        index,
        stage,
        retired,
        handle,
    })
}

/// A fresh engine and detector on the current engine and settings.
fn fresh_detector(s: &WorkerShared) -> Result<(u64, Detector, &'static str), String> {
    let (generation, factory) = s.engines.current();
    let engine = factory.engine().map_err(|e| e.to_string())?;
    let settings = s
        .live
        .settings
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut detector = Detector::new(engine, settings);
    if let Some(read) = &s.reader {
        detector.set_second_stage(Some(read.stage().map_err(|e| e.to_string())?));
    }
    Ok((generation, detector, factory.label()))
}

/// One worker's life: takes jobs until stopped or retired.
fn work(s: &WorkerShared, beat: &Stage, retired: &AtomicBool) -> Result<(), String> {
    // A restart gets a fresh engine state: whatever a panic left half-done
    // is dropped with the old one.
    let mut seen_generation = s.live.generation.load(Ordering::SeqCst);
    let (mut engine_generation, mut detector, backend) = fresh_detector(s)?;
    let mut info = ModelInfo {
        backend,
        ..s.model.info.clone()
    };
    loop {
        beat.beat();
        if s.shutdown.is_stopping() || retired.load(Ordering::SeqCst) {
            return Ok(());
        }
        match s.rx.recv_timeout(Duration::from_millis(200)) {
            Ok(job) => {
                let g = s.live.generation.load(Ordering::SeqCst);
                if g != seen_generation {
                    detector.set_settings(
                        s.live
                            .settings
                            .read()
                            .unwrap_or_else(|p| p.into_inner())
                            .clone(),
                    );
                    seen_generation = g;
                }
                if s.engines.generation() != engine_generation {
                    let (g, f) = s.engines.current();
                    engine_generation = g;
                    match f.engine() {
                        Ok(e) => {
                            detector.set_engine(e);
                            info.backend = f.label();
                        }
                        Err(e) => tracing::error!(
                            "cannot start a {} engine in this worker, staying on {}: {e}",
                            f.label(),
                            info.backend
                        ),
                    }
                }
                let outcome = process(job, &mut detector, s, beat, &info);
                s.frames.fetch_add(1, Ordering::Relaxed);
                if outcome == Outcome::Panicked {
                    // The job is accounted for; the engine it panicked in
                    // may be half-way through anything, so it goes. Not a
                    // stage restart: the next job is not held up.
                    seen_generation = s.live.generation.load(Ordering::SeqCst);
                    let (g, d, backend) = fresh_detector(s)?;
                    (engine_generation, detector, info.backend) = (g, d, backend);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
        let keep_waiting = || {
            beat.beat();
            !s.shutdown.is_stopping()
        };
        publish_outgoing(
            s,
            s.scenes.sweep(std::time::SystemTime::now()),
            &keep_waiting,
        );
    }
}

/// Queues events, snapshots and states in the outbox.
fn publish_outgoing(s: &WorkerShared, out: Vec<Outgoing>, keep_waiting: &dyn Fn() -> bool) {
    for o in out {
        match s
            .sink
            .publish_to(&o.source, &o.leaf, &o.payload, o.retain, keep_waiting)
        {
            Ok(()) => s.metrics.event(&o.source, o.kind),
            Err(e) => {
                tracing::error!(source = %o.source, "a {} message for {}: {e}; it is lost", o.kind, o.source)
            }
        }
    }
}

/// How a job ended, for the worker.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Done, failed or left queued: the engine is fine.
    Finished,
    /// Processing panicked: the job was accounted for, the engine is suspect.
    Panicked,
}

/// Runs `f`, catching a panic as its text.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|p| crate::base::restart::panic_text(&*p))
}

/// One job: a file or a camera frame.
fn process(
    job: Job,
    detector: &mut Detector,
    s: &WorkerShared,
    beat: &Stage,
    info: &ModelInfo,
) -> Outcome {
    // Waiting for the outbox (full, or its disk full) is not a hang: the
    // worker beats while it waits, so it is not replaced for it.
    let keep_waiting = || {
        beat.beat();
        !s.shutdown.is_stopping()
    };
    match job {
        Job::File(job) => process_file(job, detector, s, info, &keep_waiting),
        Job::Frame(ticket) => process_frame(ticket, detector, s, info, &keep_waiting),
    }
}

/// The newest frame of a camera. Frames are not kept on disk: one that
/// cannot be published (only while stopping) is logged as lost.
fn process_frame(
    ticket: FrameTicket,
    detector: &mut Detector,
    s: &WorkerShared,
    info: &ModelInfo,
    keep_waiting: &dyn Fn() -> bool,
) -> Outcome {
    let (sink, device, metrics) = (&*s.sink, s.device.as_str(), &*s.metrics);
    let Some(frame) = ticket.take(Duration::from_secs(1)) else {
        return Outcome::Finished;
    };
    let meta = &frame.meta;
    let detected = match guarded(|| {
        // Another worker on this stream's frame holds the reuse state: this
        // one runs a plain pass, which leaves the state as it was.
        let mut reuse = frame.reuse.as_ref().and_then(|r| match r.try_lock() {
            Ok(g) => Some(g),
            Err(std::sync::TryLockError::WouldBlock) => None,
            Err(std::sync::TryLockError::Poisoned(p)) => {
                // A pass panicked half-way: its map is partial.
                r.clear_poison();
                let mut g = p.into_inner();
                g.invalidate();
                Some(g)
            }
        });
        detector.detect_image_reusing(&frame.image, reuse.as_deref_mut())
    }) {
        Ok(d) => d,
        Err(text) => {
            metrics.frame_failed(&meta.source);
            tracing::error!(source = %meta.source, frame_id = %meta.id, stage = "panic", "frame {}: edgewatch panicked on it ({}); the frame is dropped, the worker goes on with a fresh engine; this is a bug, please report it", meta.seq, crate::base::text::one_line(&text));
            return Outcome::Panicked;
        }
    };
    match detected {
        Ok(mut result) => {
            let scene = s.scenes.get(&meta.source);
            let (frames, events) = match &scene {
                Some(scene) => {
                    let scene = scene.lock().unwrap_or_else(|p| p.into_inner());
                    scene.apply_mask(&mut result.detections);
                    let cfg = scene.config();
                    (
                        cfg.publishes(Publish::Frames),
                        cfg.publishes(Publish::Events),
                    )
                }
                None => (true, false),
            };
            let msg = Message::new(device, meta, info, &result);
            if frames {
                if let Err(e) = sink.publish(&msg, keep_waiting) {
                    tracing::error!(source = %meta.source, frame_id = %meta.id, "frame {}: {e}; its detections are lost", meta.seq);
                    return Outcome::Finished;
                }
            }
            if let (Some(scene), true) = (scene, events) {
                let out = scene.lock().unwrap_or_else(|p| p.into_inner()).observe(
                    meta.seq,
                    meta.captured_at,
                    &result.detections,
                    &frame.image,
                );
                publish_outgoing(s, out, keep_waiting);
            }
            metrics.frame_done(
                &msg.source,
                msg.detections.len(),
                &result.timing,
                &result.work,
            );
            tracing::debug!(
                source = %msg.source,
                frame_id = %msg.id,
                "frame {}: {} detection(s) in {:.0} ms",
                meta.seq,
                msg.detections.len(),
                result.timing.total
            );
        }
        Err(e) => {
            metrics.frame_failed(&meta.source);
            tracing::warn!(source = %meta.source, frame_id = %meta.id, stage = e.stage(), "frame {}: {e}", meta.seq);
        }
    }
    Outcome::Finished
}

fn process_file(
    job: FolderJob,
    detector: &mut Detector,
    s: &WorkerShared,
    info: &ModelInfo,
    keep_waiting: &dyn Fn() -> bool,
) -> Outcome {
    let (sink, device, metrics) = (&*s.sink, s.device.as_str(), &*s.metrics);
    let shown = job
        .meta
        .path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let detected = match guarded(|| detector.detect_file(&job.path)) {
        Ok(d) => d,
        Err(text) => {
            // The file goes to failed/ with the reason: re-queued, it would
            // panic again at every start, ahead of the good files.
            metrics.frame_failed(&job.meta.source);
            let reason = crate::base::text::one_line(&format!(
                "edgewatch panicked while processing it ({text}); this is a bug, please report it with this file"
            ));
            let (source, frame_id) = (job.meta.source.clone(), job.meta.id.clone());
            match job.failed("panic", &reason) {
                Ok(dest) => {
                    tracing::error!(source = %source, frame_id = %frame_id, stage = "panic", "{shown}: {reason} -> {}; the worker goes on with a fresh engine", dest.display())
                }
                Err(io) => {
                    tracing::error!(source = %source, frame_id = %frame_id, stage = "panic", "{shown}: {reason}; and cannot move it to failed/: {io}")
                }
            }
            return Outcome::Panicked;
        }
    };
    match detected {
        Ok(result) => {
            let msg = Message::new(device, &job.meta, info, &result);
            // Durable before the file counts as processed: a crash after this
            // re-sends (same id), a crash before it re-processes the file.
            if let Err(e) = sink.publish(&msg, keep_waiting) {
                // Left in .processing: the next start re-queues it.
                tracing::error!(source = %job.meta.source, frame_id = %job.meta.id, "{shown}: {e}; the file stays queued for the next start");
                return Outcome::Finished;
            }
            metrics.frame_done(
                &msg.source,
                msg.detections.len(),
                &result.timing,
                &result.work,
            );
            match job.done() {
                Ok(dest) => tracing::info!(
                    source = %msg.source,
                    frame_id = %msg.id,
                    "{shown}: {} detection(s) in {:.0} ms -> {}",
                    msg.detections.len(),
                    result.timing.total,
                    dest.display()
                ),
                Err(e) => {
                    tracing::error!(source = %msg.source, frame_id = %msg.id, "{shown}: published, but cannot move it to done/: {e}")
                }
            }
        }
        Err(e) => {
            metrics.frame_failed(&job.meta.source);
            let stage = e.stage();
            let reason = crate::base::text::one_line(&e.to_string());
            let (source, frame_id) = (job.meta.source.clone(), job.meta.id.clone());
            match job.failed(stage, &reason) {
                Ok(dest) => {
                    tracing::warn!(source = %source, frame_id = %frame_id, stage, "{shown}: {reason} (stage {stage}) -> {}", dest.display())
                }
                Err(io) => {
                    tracing::error!(source = %source, frame_id = %frame_id, stage, "{shown}: {reason}; and cannot move it to failed/: {io}")
                }
            }
        }
    }
    Outcome::Finished
}
