//! The daemon's Prometheus metrics (prometheus-client writes the format).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::infer::detector::{Timing, Work};
use crate::source::latest::LatestFrame;

/// A camera stream whose counts are exported.
struct CameraEntry {
    source: String,
    latest: std::sync::Arc<LatestFrame>,
    /// Counts already added to the counters.
    seen: [u64; 7],
}
use crate::infer::model::ModelInfo;

/// `source` and `outcome` (`done`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameLabels {
    /// Source name.
    pub source: String,
    /// What became of the frame.
    pub outcome: String,
}

/// `source`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabel {
    /// Source name.
    pub source: String,
}

/// `backend` (`tract-cpu`, `tensorrt`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    /// Backend label.
    pub backend: String,
}

/// `stage` (`decode`, `infer`, `post`, `total`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    /// Pipeline stage.
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    name: String,
    sha256: String,
    backend: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    /// Frames by source and outcome.
    pub frames: Family<FrameLabels, Counter>,
    /// Detections by source.
    pub detections: Family<SourceLabel, Counter>,
    /// Seconds per pipeline stage.
    pub stage_seconds: Family<StageLabel, Histogram, fn() -> Histogram>,
    /// Messages waiting in the outbox.
    pub outbox_messages: Gauge,
    /// Bytes waiting in the outbox.
    pub outbox_bytes: Gauge,
    /// 1 while the outbox cannot write (a full disk): frames wait.
    pub outbox_write_failing: Gauge,
    /// Outbox records found damaged (CRC or key) since start.
    pub outbox_damaged: Gauge,
    /// Bytes the outbox has written (messages and acks) since it was opened.
    pub outbox_written: Counter,
    /// Data syncs the outbox has made since it was opened.
    pub outbox_syncs: Counter,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Messages the broker acknowledged.
    pub mqtt_acked: Counter,
    /// Resident memory, read at scrape time.
    pub resident_bytes: Gauge,
    /// Stages currently hung.
    pub stalled_stages: Gauge,
    /// Restarts in place, by stage.
    pub restarts: Family<StageLabel, Counter>,
    /// Camera frames by source and what became of them.
    pub camera_frames: Family<FrameLabels, Counter>,
    /// Camera reconnects by source.
    pub camera_reconnects: Family<SourceLabel, Counter>,
    /// Event messages by source and kind (new, update, end, snapshot, objects).
    pub events: Family<FrameLabels, Counter>,
    /// Pixels of model input, by source.
    pub model_pixels: Family<SourceLabel, Counter>,
    /// Tiles by source and outcome (run, reused).
    pub tiles: Family<FrameLabels, Counter>,
    /// 1 for the backend running frames now, 0 for one it left.
    // Only the TensorRT start-up switches backends while running.
    #[cfg_attr(not(feature = "tensorrt"), allow(dead_code))]
    pub backend: Family<BackendLabel, Gauge>,
    /// Times the daemon switched backend (CPU to a freshly built engine).
    // Only the TensorRT start-up switches backends while running.
    #[cfg_attr(not(feature = "tensorrt"), allow(dead_code))]
    pub backend_switches: Counter,
    /// Running camera streams, and the counts already exported from each.
    cameras: std::sync::Mutex<Vec<CameraEntry>>,
    /// Labelled families: (name, help, type). prometheus-client writes a
    /// family only once it has a sample; scrapers and dashboards want every
    /// family described from the first scrape.
    families: Vec<(&'static str, &'static str, &'static str)>,
}

/// The labelled families, as registered below.
const FAMILIES: [(&str, &str, &str); 9] = [
    ("frames", "Frames by source and outcome (done, failed)", "counter"),
    ("detections", "Detections published, by source", "counter"),
    ("frame_stage_seconds", "Time per frame in each pipeline stage", "histogram"),
    ("stage_restarts", "Times a failed stage was restarted in place", "counter"),
    ("camera_frames", "Camera frames by source and outcome (captured, skipped, dropped, bad, inferred, still: not inferred for lack of motion)", "counter"),
    ("camera_reconnects", "Times a camera was reopened after it was lost", "counter"),
    ("events", "Event messages queued, by source and outcome (new, update, end, snapshot, objects)", "counter"),
    ("model_pixels", "Pixels of model input (tensor height x width, every engine call and batch item), by source: what frames cost the model", "counter"),
    ("tiles", "Tiles of tiled passes by source and outcome (run; reused: the map kept from an earlier run because the tile's picture had not changed, motion = true)", "counter"),
];

fn help(name: &str) -> &'static str {
    FAMILIES
        .iter()
        .find(|f| f.0 == name)
        .map(|f| f.1)
        .expect("a family listed in FAMILIES")
}

impl Metrics {
    /// Frames now run on `to` (it was `from`).
    // Only the TensorRT start-up switches backends while running.
    #[cfg_attr(not(feature = "tensorrt"), allow(dead_code))]
    pub fn backend_switched(&self, from: &str, to: &str) {
        self.backend
            .get_or_create(&BackendLabel {
                backend: from.to_string(),
            })
            .set(0);
        self.backend
            .get_or_create(&BackendLabel {
                backend: to.to_string(),
            })
            .set(1);
        self.backend_switches.inc();
    }

    /// Registers everything, with the model as an info metric.
    pub fn new(model: &ModelInfo) -> Metrics {
        let mut registry = Registry::with_prefix("edgewatch");
        let frames = Family::<FrameLabels, Counter>::default();
        registry.register("frames", help("frames"), frames.clone());
        let detections = Family::<SourceLabel, Counter>::default();
        registry.register("detections", help("detections"), detections.clone());
        let stage_seconds =
            Family::<StageLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "frame_stage_seconds",
            help("frame_stage_seconds"),
            stage_seconds.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let outbox_messages = gauge(
            &mut registry,
            "outbox_messages",
            "Messages waiting for the broker",
        );
        let outbox_bytes = gauge(
            &mut registry,
            "outbox_bytes",
            "Bytes waiting for the broker",
        );
        let outbox_write_failing = gauge(
            &mut registry,
            "outbox_write_failing",
            "1 while the outbox cannot write (disk full or failing); frames wait and writing is retried",
        );
        let outbox_damaged = gauge(
            &mut registry,
            "outbox_damaged_records",
            "Outbox records found damaged (CRC or key mismatch) since start, skipped",
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let outbox_written = counter(
            &mut registry,
            "outbox_written_bytes",
            "Bytes of records (messages and acks) the outbox has written since it was opened: disk wear",
        );
        let outbox_syncs = counter(
            &mut registry,
            "outbox_syncs",
            "Data syncs (fsync) the outbox has made since it was opened, one per message",
        );
        let mqtt_connected = gauge(
            &mut registry,
            "mqtt_connected",
            "1 while connected to the broker",
        );
        let mqtt_acked = counter(
            &mut registry,
            "mqtt_acked_messages",
            "Messages acknowledged by the broker since start",
        );
        let resident_bytes = gauge(
            &mut registry,
            "resident_memory_bytes",
            "Resident set size of the process",
        );
        let stalled_stages = gauge(
            &mut registry,
            "stalled_stages",
            "Stages that stopped making progress",
        );
        let restarts = Family::<StageLabel, Counter>::default();
        registry.register("stage_restarts", help("stage_restarts"), restarts.clone());
        let camera_frames = Family::<FrameLabels, Counter>::default();
        registry.register(
            "camera_frames",
            help("camera_frames"),
            camera_frames.clone(),
        );
        let camera_reconnects = Family::<SourceLabel, Counter>::default();
        registry.register(
            "camera_reconnects",
            help("camera_reconnects"),
            camera_reconnects.clone(),
        );
        let events = Family::<FrameLabels, Counter>::default();
        registry.register("events", help("events"), events.clone());
        let model_pixels = Family::<SourceLabel, Counter>::default();
        registry.register("model_pixels", help("model_pixels"), model_pixels.clone());
        let tiles = Family::<FrameLabels, Counter>::default();
        registry.register("tiles", help("tiles"), tiles.clone());
        let backend = Family::<BackendLabel, Gauge>::default();
        registry.register(
            "backend",
            "1 for the backend running frames now (tract-cpu, tensorrt)",
            backend.clone(),
        );
        backend
            .get_or_create(&BackendLabel {
                backend: model.backend.to_string(),
            })
            .set(1);
        let backend_switches = Counter::default();
        registry.register(
            "backend_switches",
            "Times frames moved to another backend (a TensorRT engine finished building)",
            backend_switches.clone(),
        );
        registry.register(
            "model",
            "The model being run",
            Info::new(ModelLabels {
                name: model.name.clone(),
                sha256: model.sha256.clone(),
                backend: model.backend.to_string(),
            }),
        );
        Metrics {
            registry,
            frames,
            detections,
            stage_seconds,
            outbox_messages,
            outbox_bytes,
            outbox_write_failing,
            outbox_damaged,
            outbox_written,
            outbox_syncs,
            mqtt_connected,
            mqtt_acked,
            resident_bytes,
            stalled_stages,
            restarts,
            camera_frames,
            camera_reconnects,
            events,
            model_pixels,
            tiles,
            backend,
            backend_switches,
            cameras: std::sync::Mutex::new(Vec::new()),
            families: FAMILIES.to_vec(),
        }
    }

    /// Exports a camera stream's counts from now on; a restarted stream
    /// replaces the one of the same name, and its counters keep rising.
    pub fn camera(&self, source: &str, latest: std::sync::Arc<LatestFrame>) {
        self.sync_cameras();
        let mut cameras = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        cameras.retain(|c| c.source != source);
        cameras.push(CameraEntry {
            source: source.into(),
            latest,
            seen: [0; 7],
        });
    }

    fn sync_cameras(&self) {
        let mut cameras = self.cameras.lock().unwrap_or_else(|p| p.into_inner());
        for cam in cameras.iter_mut() {
            let c = &cam.latest.counts;
            let now = [
                &c.captured,
                &c.skipped,
                &c.dropped,
                &c.bad,
                &c.taken,
                &c.reconnects,
                &c.still,
            ]
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed));
            for (i, outcome) in [
                (0, "captured"),
                (1, "skipped"),
                (2, "dropped"),
                (3, "bad"),
                (4, "inferred"),
                (6, "still"),
            ] {
                self.camera_frames
                    .get_or_create(&FrameLabels {
                        source: cam.source.clone(),
                        outcome: outcome.into(),
                    })
                    .inc_by(now[i] - cam.seen[i]);
            }
            self.camera_reconnects
                .get_or_create(&SourceLabel {
                    source: cam.source.clone(),
                })
                .inc_by(now[5] - cam.seen[5]);
            cam.seen = now;
        }
    }

    /// Records a stage restart.
    pub fn stage_restarted(&self, stage: &str) {
        self.restarts
            .get_or_create(&StageLabel {
                stage: stage.into(),
            })
            .inc();
    }

    /// Records a processed frame.
    /// One event message queued.
    pub fn event(&self, source: &str, kind: &str) {
        self.events
            .get_or_create(&FrameLabels {
                source: source.into(),
                outcome: kind.into(),
            })
            .inc();
    }

    /// One frame done.
    pub fn frame_done(&self, source: &str, detections: usize, timing: &Timing, work: &Work) {
        self.model_pixels
            .get_or_create(&SourceLabel {
                source: source.into(),
            })
            .inc_by(work.model_pixels);
        for (outcome, n) in [("run", work.tiles.run), ("reused", work.tiles.reused)] {
            if n > 0 {
                self.tiles
                    .get_or_create(&FrameLabels {
                        source: source.into(),
                        outcome: outcome.into(),
                    })
                    .inc_by(n as u64);
            }
        }
        self.frames
            .get_or_create(&FrameLabels {
                source: source.into(),
                outcome: "done".into(),
            })
            .inc();
        self.detections
            .get_or_create(&SourceLabel {
                source: source.into(),
            })
            .inc_by(detections as u64);
        for (stage, ms) in [
            ("decode", timing.decode),
            ("infer", timing.infer),
            ("post", timing.post),
            ("total", timing.total),
        ] {
            self.stage_seconds
                .get_or_create(&StageLabel {
                    stage: stage.into(),
                })
                .observe(ms / 1000.0);
        }
    }

    /// Records a frame that went to `failed/`.
    pub fn frame_failed(&self, source: &str) {
        self.frames
            .get_or_create(&FrameLabels {
                source: source.into(),
                outcome: "failed".into(),
            })
            .inc();
    }

    /// OpenMetrics 1.0 text, for scrapers that ask for it
    /// (`Accept: application/openmetrics-text`).
    pub fn encode(&self) -> String {
        self.sync_cameras();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        let missing: String = self
            .families
            .iter()
            .filter(|(name, _, _)| !out.contains(&format!("# TYPE edgewatch_{name} ")))
            .map(|(name, help, kind)| {
                format!("# HELP edgewatch_{name} {help}.\n# TYPE edgewatch_{name} {kind}\n")
            })
            .collect();
        match out.rfind("# EOF") {
            Some(at) => out.insert_str(at, &missing),
            None => out.push_str(&missing),
        }
        out
    }

    /// The Prometheus text format 0.0.4, for every other scraper (and
    /// `promtool check metrics`).
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// Sets a counter that mirrors a total kept elsewhere (it only grows).
pub fn set_counter(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// Rewrites OpenMetrics text as the Prometheus 0.0.4 text format, which
/// has no `info` type, no `# UNIT` and no `# EOF`, and names a counter's
/// family after its samples (`x_total`), not without the suffix.
fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "unknown" => ("", "untyped"),
                other => ("", other),
            };
            out.push_str(&format!("# TYPE {name}{suffix} {kind}\n"));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // HELP comes before TYPE: the suffix is not known yet, so HELP
            // lines are held back and written after their TYPE line.
            out.push_str(&format!("\u{0}HELP {rest}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    // Put each held HELP line after its TYPE line, with the TYPE's name.
    let mut fixed = String::with_capacity(out.len());
    let mut held: Option<String> = None;
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("\u{0}HELP ") {
            held = Some(rest.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if let Some(help) = held.take() {
                let text = help.split_once(' ').map(|(_, t)| t).unwrap_or("");
                fixed.push_str(&format!("# HELP {name} {text}\n"));
            }
        }
        fixed.push_str(line);
        fixed.push('\n');
    }
    fixed
}

/// Resident set size from `/proc/self/statm`, in bytes.
pub fn resident_bytes() -> i64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<i64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_becomes_the_0_0_4_text_format() {
        let om = "# HELP edgewatch_frames Frames by source.\n# TYPE edgewatch_frames counter\nedgewatch_frames_total{source=\"a\"} 3\n# HELP edgewatch_model The model.\n# TYPE edgewatch_model info\nedgewatch_model_info{name=\"m\"} 1\n# HELP edgewatch_rss Bytes.\n# TYPE edgewatch_rss gauge\n# UNIT edgewatch_rss bytes\nedgewatch_rss 5\n# EOF\n";
        let text = openmetrics_to_prometheus(om);
        assert_eq!(
            text,
            "# HELP edgewatch_frames_total Frames by source.\n# TYPE edgewatch_frames_total counter\nedgewatch_frames_total{source=\"a\"} 3\n# HELP edgewatch_model_info The model.\n# TYPE edgewatch_model_info gauge\nedgewatch_model_info{name=\"m\"} 1\n# HELP edgewatch_rss Bytes.\n# TYPE edgewatch_rss gauge\nedgewatch_rss 5\n"
        );
    }
}
