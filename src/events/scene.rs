//! One stream's scene: masks its detections, tracks them, and turns the
//! tracks into the events, snapshots and objects-present state that are
//! published. [`Scenes`] holds every stream's, shared by the workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use image::RgbImage;

use super::config::{Publish, SceneConfig, SnapshotConfig, SnapshotTarget, BEST_SNAPSHOTS_HELD};
use super::message::{rfc3339, EventMessage, EventType, ObjectsState};
use super::snapshot::{self, SnapshotDir};
use super::tracker::{Change, Track, Tracker, TrackerSettings};
use super::zones::Zones;
use crate::base::topic::Leaf;
use crate::postprocess::Detection;

/// A message to publish under `{prefix}/{device}/{source}/`.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Source name.
    pub source: String,
    /// The topic below the source: `events`, `events/snapshot/<id>`, `objects`.
    pub leaf: Leaf,
    /// Body.
    pub payload: Vec<u8>,
    /// Retained by the broker (the objects state).
    pub retain: bool,
    /// `new`, `update`, `end`, `snapshot` or `objects`, for counts and logs.
    pub kind: &'static str,
}

/// What the scene remembers of a track beyond the tracker.
#[derive(Debug, Default)]
struct Announced {
    /// `new` sent.
    announced: bool,
    /// Events sent.
    sent: u64,
    /// Box and time of the last event.
    last_box: [f32; 4],
    last_at: Option<SystemTime>,
    zones: Vec<String>,
    entered: Vec<String>,
    /// The best crop so far (`best = true`), with its score.
    best: Option<(f32, Vec<u8>)>,
}

/// One stream's tracker and event policy.
pub struct SceneTracker {
    source: String,
    device: String,
    cfg: SceneConfig,
    zones: Zones,
    tracker: Tracker,
    state: HashMap<u64, Announced>,
    last_seq: u64,
    last_frame: SystemTime,
    silent_after: Duration,
    dir: Option<SnapshotDir>,
    /// The objects state last published.
    present: Option<(BTreeMap<String, usize>, bool)>,
    /// Why snapshots cannot be written, said once.
    snapshot_trouble: Option<String>,
}

/// Whether `now` moved or resized by more than `min_move` from `then`.
fn moved(then: &[f32; 4], now: &[f32; 4], min_move: f32) -> bool {
    let (w0, h0) = ((then[2] - then[0]).max(1.0), (then[3] - then[1]).max(1.0));
    let (w1, h1) = (now[2] - now[0], now[3] - now[1]);
    let (c0, c1) = (super::zones::centre(then), super::zones::centre(now));
    let size = w0.max(h0);
    (c1[0] - c0[0]).abs() > min_move * size
        || (c1[1] - c0[1]).abs() > min_move * size
        || (w1 - w0).abs() > min_move * w0
        || (h1 - h0).abs() > min_move * h0
}

impl SceneTracker {
    /// A scene for `source`; track ids start at `first_id`. `silent_after`:
    /// with no frame inferred for this long the stream is taken as gone and
    /// its objects end.
    pub fn new(
        device: &str,
        source: &str,
        cfg: SceneConfig,
        first_id: u64,
        silent_after: Duration,
    ) -> SceneTracker {
        let e = &cfg.events;
        let tracker = Tracker::new(
            TrackerSettings {
                match_iou: e.match_iou,
                high_score: e.high_score,
                min_frames: e.min_frames,
                max_tracks: e.max_tracks,
            },
            first_id,
        );
        let mut snapshot_trouble = None;
        let dir = match &cfg.snapshots {
            Some(
                s @ SnapshotConfig {
                    to: SnapshotTarget::Dir,
                    dir: Some(d),
                    ..
                },
            ) => match SnapshotDir::open(d, source, s) {
                Ok(dir) => Some(dir),
                Err(e) => {
                    let why = format!("cannot use the snapshot directory {}: {e}; snapshots are skipped (check snapshots.dir and its permissions)", d.display());
                    tracing::error!(source = %source, "source {source}: {why}");
                    snapshot_trouble = Some(why);
                    None
                }
            },
            _ => None,
        };
        SceneTracker {
            source: source.to_string(),
            device: device.to_string(),
            zones: Zones::new(&cfg.zones, &cfg.mask),
            cfg,
            tracker,
            state: HashMap::new(),
            last_seq: 0,
            last_frame: SystemTime::now(),
            silent_after,
            dir,
            present: None,
            snapshot_trouble,
        }
    }

    /// The configuration it runs.
    pub fn config(&self) -> &SceneConfig {
        &self.cfg
    }

    /// Drops the detections whose box centre is in a masked area.
    pub fn apply_mask(&self, dets: &mut Vec<Detection>) {
        if self.zones.has_masks() {
            dets.retain(|d| !self.zones.masked(&d.bbox));
        }
    }

    /// Takes one inferred frame (number `seq`, captured `at`, its masked
    /// detections). A frame older than one already taken (two workers
    /// finishing out of order) is not tracked.
    pub fn observe(
        &mut self,
        seq: u64,
        at: SystemTime,
        dets: &[Detection],
        frame: &RgbImage,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if seq <= self.last_seq {
            return out;
        }
        self.last_seq = seq;
        self.last_frame = at;
        for change in self.tracker.update(dets, at) {
            let id = match change {
                Change::Confirmed(id) | Change::Seen(id) => id,
            };
            let Some(track) = self.tracker.get(id).cloned() else {
                continue;
            };
            let zones = self.zones.containing(&track.bbox);
            let st = self.state.entry(id).or_default();
            let zones_changed = st.zones != zones;
            for z in &zones {
                if !st.entered.contains(z) {
                    st.entered.push(z.clone());
                }
            }
            st.zones = zones;
            let wanted = self.cfg.events.only_zones.is_empty()
                || st
                    .entered
                    .iter()
                    .any(|z| self.cfg.events.only_zones.contains(z));
            if !st.announced {
                if wanted {
                    st.announced = true;
                    self.emit(EventType::New, &track, Some(frame), &mut out);
                }
                continue;
            }
            let interval = self.cfg.events.update_interval_s;
            let due = interval > 0.0
                && st.last_at.is_some_and(|t| {
                    at.duration_since(t).unwrap_or_default().as_secs_f64() >= interval
                });
            if zones_changed || due || moved(&st.last_box, &track.bbox, self.cfg.events.min_move) {
                self.emit(EventType::Update, &track, None, &mut out);
            }
            self.keep_best(&track, frame);
        }
        self.expire(at, &mut out);
        out
    }

    /// Ends the objects that have left by `now` (no new frame needed).
    pub fn sweep(&mut self, now: SystemTime) -> Vec<Outgoing> {
        let mut out = Vec::new();
        self.expire(now, &mut out);
        out
    }

    /// Ends every object (the source is stopping or changed).
    pub fn finish(&mut self) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for t in self.tracker.clear() {
            self.end(t, &mut out);
        }
        self.publish_present(false, &mut out);
        out
    }

    fn expire(&mut self, now: SystemTime, out: &mut Vec<Outgoing>) {
        let end_after = Duration::from_secs_f64(self.cfg.events.end_after_s);
        for t in self
            .tracker
            .expire(now, end_after, self.last_frame, self.silent_after)
        {
            self.end(t, out);
        }
        // Silent: no frame for as long as an absent object takes to end,
        // while the grace before every object ends is still running.
        let grace = Duration::from_secs_f64(self.cfg.events.silent_grace_s);
        let quiet = now.duration_since(self.last_frame).unwrap_or_default();
        let silent = quiet >= self.silent_after.saturating_sub(grace).max(end_after)
            && !self.tracker.tracks().is_empty();
        self.publish_present(silent, out);
    }

    fn end(&mut self, t: Track, out: &mut Vec<Outgoing>) {
        let announced = self.state.get(&t.id).is_some_and(|s| s.announced);
        if announced {
            self.emit(EventType::End, &t, None, out);
            if let Some((_, jpeg)) = self.state.get_mut(&t.id).and_then(|s| s.best.take()) {
                self.snapshot(&t, "best", jpeg, out);
            }
        }
        self.state.remove(&t.id);
    }

    /// Publishes the objects-present state when it changed.
    fn publish_present(&mut self, silent: bool, out: &mut Vec<Outgoing>) {
        // A frames-only source tracks nothing, so it has no state to tell.
        if !self.cfg.publishes(Publish::Events) {
            return;
        }
        let mut labels = BTreeMap::new();
        for t in self.tracker.tracks() {
            if self.state.get(&t.id).is_some_and(|s| s.announced) {
                *labels.entry(t.label.clone()).or_insert(0) += 1;
            }
        }
        let now = (labels, silent);
        if self.present.as_ref() == Some(&now) {
            return;
        }
        let state = ObjectsState {
            count: now.0.values().sum(),
            labels: now.0.clone(),
            at: rfc3339(SystemTime::now()),
            silent,
        };
        self.present = Some(now);
        out.push(Outgoing {
            source: self.source.clone(),
            leaf: Leaf::Objects,
            payload: serde_json::to_vec(&state).expect("state serialises"),
            retain: true,
            kind: "objects",
        });
    }

    fn emit(
        &mut self,
        kind: EventType,
        t: &Track,
        frame: Option<&RgbImage>,
        out: &mut Vec<Outgoing>,
    ) {
        let st = self.state.entry(t.id).or_default();
        let mut msg = EventMessage::new(
            &self.device,
            &self.source,
            kind,
            t,
            st.sent,
            &st.zones,
            &st.entered,
        );
        st.sent += 1;
        st.last_box = t.bbox;
        st.last_at = Some(t.last_seen);
        let jpeg = match (frame, &self.cfg.snapshots) {
            (Some(frame), Some(cfg)) => match snapshot::encode(frame, &t.bbox, cfg) {
                Ok(j) => Some(j),
                Err(e) => {
                    tracing::warn!(source = %self.source, "source {}: track {}: {e}", self.source, t.id);
                    None
                }
            },
            _ => None,
        };
        if let Some(jpeg) = jpeg {
            msg.snapshot = self.snapshot(t, "new", jpeg, out);
        }
        out.push(Outgoing {
            source: self.source.clone(),
            leaf: Leaf::Events,
            payload: msg.to_json().into_bytes(),
            retain: false,
            kind: match kind {
                EventType::New => "new",
                EventType::Update => "update",
                EventType::End => "end",
            },
        });
    }

    /// Sends or writes a snapshot; says where it went.
    fn snapshot(
        &mut self,
        t: &Track,
        what: &str,
        jpeg: Vec<u8>,
        out: &mut Vec<Outgoing>,
    ) -> Option<String> {
        let cfg = self.cfg.snapshots.as_ref()?;
        match cfg.to {
            SnapshotTarget::Mqtt => {
                let leaf = Leaf::Snapshot(t.id);
                let said = leaf.to_string();
                out.push(Outgoing {
                    source: self.source.clone(),
                    leaf,
                    payload: jpeg,
                    retain: false,
                    kind: "snapshot",
                });
                Some(said)
            }
            SnapshotTarget::Dir => {
                let dir = self.dir.as_ref()?;
                match dir.write(&format!("{}-{what}.jpg", t.id), &jpeg) {
                    Ok(path) => {
                        self.snapshot_trouble = None;
                        Some(path.display().to_string())
                    }
                    Err(e) => {
                        let why = format!("cannot write a snapshot: {e}");
                        if self.snapshot_trouble.as_deref() != Some(why.as_str()) {
                            tracing::warn!(source = %self.source, "source {}: {why}; events go on without snapshots until it works", self.source);
                            self.snapshot_trouble = Some(why);
                        }
                        None
                    }
                }
            }
        }
    }

    /// Keeps the crop of the track's best-scoring frame (`best = true`).
    fn keep_best(&mut self, t: &Track, frame: &RgbImage) {
        let Some(cfg) = self.cfg.snapshots.as_ref().filter(|c| c.best) else {
            return;
        };
        let held = self.state.values().filter(|s| s.best.is_some()).count() as u64;
        let st = self.state.entry(t.id).or_default();
        let better = match &st.best {
            Some((score, _)) => t.score >= score + 0.02,
            None => held < BEST_SNAPSHOTS_HELD,
        };
        if !better {
            return;
        }
        if let Ok(jpeg) = snapshot::encode(frame, &t.bbox, cfg) {
            if jpeg.len() <= cfg.best_limit() {
                st.best = Some((t.score, jpeg));
            }
        }
    }
}

/// Every stream's scene, shared by the workers.
pub struct Scenes {
    device: String,
    scenes: Mutex<HashMap<String, Arc<Mutex<SceneTracker>>>>,
    /// Messages from scenes that were replaced or removed, for the next sweep.
    pending: Mutex<Vec<Outgoing>>,
    /// When the last sweep ran: one worker sweeps at a time, four times a second.
    swept: Mutex<std::time::Instant>,
}

/// How often [`Scenes::sweep`] looks for objects that left.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Scenes {
    /// No scenes yet.
    pub fn new(device: &str) -> Scenes {
        Scenes {
            device: device.to_string(),
            scenes: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            swept: Mutex::new(std::time::Instant::now()),
        }
    }

    /// Sets `source`'s scene. An unchanged one keeps its tracks; a changed
    /// one ends them and starts afresh.
    pub fn configure(&self, source: &str, cfg: SceneConfig, silent_after: Duration) {
        let mut scenes = lock(&self.scenes);
        if let Some(old) = scenes.get(source) {
            let mut old = lock(old);
            if old.config() == &cfg && old.silent_after == silent_after {
                return;
            }
            let ended = old.finish();
            lock(&self.pending).extend(ended);
        }
        // Ids grow across restarts: the clock in microseconds at the start.
        let first_id = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        let scene = SceneTracker::new(&self.device, source, cfg, first_id, silent_after);
        scenes.insert(source.to_string(), Arc::new(Mutex::new(scene)));
    }

    /// Removes `source`'s scene, ending its objects.
    pub fn remove(&self, source: &str) {
        if let Some(old) = lock(&self.scenes).remove(source) {
            let ended = lock(&old).finish();
            lock(&self.pending).extend(ended);
        }
    }

    /// `source`'s scene, if it is a stream.
    pub fn get(&self, source: &str) -> Option<Arc<Mutex<SceneTracker>>> {
        lock(&self.scenes).get(source).cloned()
    }

    /// What every scene has to say at `now` without a new frame; nothing
    /// when another caller swept less than a quarter second ago.
    pub fn sweep(&self, now: SystemTime) -> Vec<Outgoing> {
        {
            let Ok(mut swept) = self.swept.try_lock() else {
                return Vec::new();
            };
            if swept.elapsed() < SWEEP_EVERY {
                return Vec::new();
            }
            *swept = std::time::Instant::now();
        }
        let mut out = std::mem::take(&mut *lock(&self.pending));
        let scenes: Vec<_> = lock(&self.scenes).values().cloned().collect();
        for scene in scenes {
            out.extend(lock(&scene).sweep(now));
        }
        out
    }
}

impl Scenes {
    /// Ends every scene's objects (the daemon is stopping).
    pub fn finish_all(&self) -> Vec<Outgoing> {
        let mut out = std::mem::take(&mut *lock(&self.pending));
        let scenes: Vec<_> = lock(&self.scenes).values().cloned().collect();
        for scene in scenes {
            out.extend(lock(&scene).finish());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::config::{default_publish, EventsConfig, ZoneConfig};

    fn det(x: f32, score: f32) -> Detection {
        Detection {
            label: "text".into(),
            class_id: 0,
            score,
            bbox: [x, 100.0, x + 60.0, 120.0],
            quad: None,
            read: None,
        }
    }

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    fn scene(events: EventsConfig, zones: Vec<ZoneConfig>) -> SceneTracker {
        let cfg = SceneConfig {
            publish: default_publish(),
            zones,
            mask: vec![vec![[0.0, 0.0], [50.0, 0.0], [50.0, 50.0], [0.0, 50.0]]],
            events,
            snapshots: None,
        };
        SceneTracker::new("dev", "cam", cfg, 7, Duration::from_secs(60))
    }

    fn events(out: &[Outgoing]) -> Vec<(String, u64)> {
        out.iter()
            .filter(|o| o.leaf == Leaf::Events)
            .map(|o| {
                let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
                (
                    v["type"].as_str().unwrap().to_string(),
                    v["track_id"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_frames_only_scene_says_nothing_of_its_own() {
        let mut s = scene(EventsConfig::default(), Vec::new());
        s.cfg.publish = vec![Publish::Frames];
        assert!(s.sweep(at(0)).is_empty(), "no objects state");
        assert!(s.finish().is_empty());
    }

    #[test]
    fn an_object_gives_one_new_the_updates_asked_for_and_one_end() {
        let mut s = scene(
            EventsConfig {
                update_interval_s: 4.0,
                min_frames: 2,
                ..EventsConfig::default()
            },
            Vec::new(),
        );
        let frame = RgbImage::new(640, 480);
        let mut all = Vec::new();
        // Still for 10 s at 5 fps, then it moves 30 px a frame for 1 s.
        for i in 0..50u64 {
            all.extend(s.observe(i + 1, at(200 * i), &[det(100.0, 0.9)], &frame));
        }
        for i in 50..55u64 {
            let x = 100.0 + 30.0 * (i - 49) as f32;
            all.extend(s.observe(i + 1, at(200 * i), &[det(x, 0.9)], &frame));
        }
        // Gone: the sweep ends it 5 s after it was last seen.
        all.extend(s.observe(56, at(11_000), &[], &frame));
        all.extend(s.sweep(at(16_000)));
        assert!(events(&all).iter().all(|(_, id)| *id == 7));
        let kinds: Vec<String> = events(&all).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds.first().map(String::as_str), Some("new"));
        assert_eq!(kinds.last().map(String::as_str), Some("end"));
        assert_eq!(kinds.iter().filter(|k| *k == "new").count(), 1);
        assert_eq!(kinds.iter().filter(|k| *k == "end").count(), 1);
        // Timed updates at 4 s and 8 s while still; the move at 30 px a
        // frame (half the box's 60 px) is more than min_move each frame.
        let updates = kinds.iter().filter(|k| *k == "update").count();
        assert_eq!(updates, 2 + 5, "{kinds:?}");
        // The objects state went 1, then 0, retained.
        let states: Vec<u64> = all
            .iter()
            .filter(|o| o.leaf == Leaf::Objects)
            .map(|o| {
                assert!(o.retain);
                serde_json::from_slice::<serde_json::Value>(&o.payload).unwrap()["count"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(states, [0, 1, 0]);
    }

    /// A stream that stops: the objects stay for end_after_s plus the
    /// grace (here 2 + 10 s, as the daemon computes `silent_after`), and the
    /// retained state says "silent" meanwhile; then they end.
    #[test]
    fn a_silent_stream_is_said_in_the_objects_state_before_its_objects_end() {
        let cfg = SceneConfig {
            publish: default_publish(),
            zones: Vec::new(),
            mask: Vec::new(),
            events: EventsConfig {
                min_frames: 1,
                end_after_s: 2.0,
                silent_grace_s: 10.0,
                ..EventsConfig::default()
            },
            snapshots: None,
        };
        let mut s = SceneTracker::new("dev", "cam", cfg, 7, Duration::from_secs(12));
        let frame = RgbImage::new(640, 480);
        let mut all = Vec::new();
        for i in 0..3u64 {
            all.extend(s.observe(i + 1, at(500 * i), &[det(100.0, 0.9)], &frame));
        }
        // The stream stops at 1 s: silent from 1 + 2 s, ended at 1 + 12 s.
        all.extend(s.sweep(at(2_000)));
        all.extend(s.sweep(at(4_000)));
        all.extend(s.sweep(at(8_000)));
        all.extend(s.sweep(at(13_500)));
        let states: Vec<(u64, bool)> = all
            .iter()
            .filter(|o| o.leaf == Leaf::Objects)
            .map(|o| {
                let v: serde_json::Value = serde_json::from_slice(&o.payload).unwrap();
                (v["count"].as_u64().unwrap(), v["silent"].as_bool().unwrap())
            })
            .collect();
        assert_eq!(states, [(1, false), (1, true), (0, false)]);
        let kinds: Vec<String> = events(&all).into_iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, ["new", "end"]);
    }

    #[test]
    fn masks_drop_detections_and_zones_gate_and_name_events() {
        let mut s = scene(
            EventsConfig {
                min_frames: 1,
                only_zones: vec!["door".into()],
                ..EventsConfig::default()
            },
            vec![ZoneConfig {
                name: "door".into(),
                points: vec![[300.0, 0.0], [640.0, 0.0], [640.0, 480.0], [300.0, 480.0]],
            }],
        );
        let mut dets = vec![
            det(100.0, 0.9),
            Detection {
                bbox: [10.0, 10.0, 30.0, 30.0],
                ..det(0.0, 0.9)
            },
        ];
        s.apply_mask(&mut dets);
        assert_eq!(dets.len(), 1, "the masked box is gone");
        let frame = RgbImage::new(640, 480);
        // Outside the door: tracked, no event yet.
        let out = s.observe(1, at(0), &dets, &frame);
        assert!(events(&out).is_empty());
        // Walks into the door zone: `new`, naming it.
        let mut out = Vec::new();
        for i in 1..12u64 {
            out.extend(s.observe(
                i + 1,
                at(200 * i),
                &[det(100.0 + 20.0 * i as f32, 0.9)],
                &frame,
            ));
        }
        let first = out.iter().find(|o| o.leaf == Leaf::Events).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
        assert_eq!(v["type"], "new");
        assert_eq!(v["zones"], serde_json::json!(["door"]));
        assert_eq!(v["schema"], "edgewatch.event/1");
        // An out-of-order (older) frame is not tracked.
        assert!(s.observe(3, at(400), &[], &frame).is_empty());
    }
}
