//! What a camera-like source publishes and how its objects become events:
//! the `publish`, `zones`, `mask`, `[source.events]` and `[source.snapshots]`
//! keys of a camera, RTSP or replay source.

use crate::base::issue::Issue;
use std::path::PathBuf;

use serde::Deserialize;

/// What a stream source publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Publish {
    /// `edgewatch.event/1` messages on `…/events`: new, update, end.
    Events,
    /// One `edgewatch.detections/1` message per inferred frame.
    Frames,
}

/// `[source.events]`: when tracked objects are announced.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// An `update` is sent when the box has moved (its centre, or a side's
    /// length) by more than this fraction of its size since the last one.
    #[serde(default = "d_min_move")]
    pub min_move: f32,
    /// An `update` is also sent this often while the object stays; 0: never.
    #[serde(default = "d_update_interval")]
    pub update_interval_s: f64,
    /// An object unseen this long has left: `end`.
    #[serde(default = "d_end_after")]
    pub end_after_s: f64,
    /// Frames an object must be seen in before its `new` (filters flicker).
    #[serde(default = "d_min_frames")]
    pub min_frames: u32,
    /// A box matches a track when their IoU is at least this.
    #[serde(default = "d_iou")]
    pub match_iou: f32,
    /// Detections scoring at least this start tracks; weaker ones only keep
    /// existing tracks alive (ByteTrack's two stages).
    #[serde(default = "d_high_score")]
    pub high_score: f32,
    /// Events only for objects that have entered one of these zones.
    #[serde(default)]
    pub only_zones: Vec<String>,
    /// Most objects tracked at once in this source; more are not tracked.
    #[serde(default = "d_max_tracks")]
    pub max_tracks: usize,
    /// A stream that stops sending frames keeps its objects this much
    /// longer than `end_after_s` (plus a frame interval and the motion
    /// refresh) before they all end, so a camera that stalls for a moment
    /// does not end and re-announce everything. The `objects` state says
    /// `"silent": true` meanwhile.
    #[serde(default = "d_silent_grace")]
    pub silent_grace_s: f64,
}

fn d_min_move() -> f32 {
    0.25
}
fn d_update_interval() -> f64 {
    60.0
}
fn d_end_after() -> f64 {
    5.0
}
fn d_min_frames() -> u32 {
    2
}
fn d_iou() -> f32 {
    0.3
}
fn d_high_score() -> f32 {
    0.6
}
fn d_max_tracks() -> usize {
    64
}
fn d_silent_grace() -> f64 {
    10.0
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            min_move: d_min_move(),
            update_interval_s: d_update_interval(),
            end_after_s: d_end_after(),
            min_frames: d_min_frames(),
            match_iou: d_iou(),
            high_score: d_high_score(),
            only_zones: Vec::new(),
            max_tracks: d_max_tracks(),
            silent_grace_s: d_silent_grace(),
        }
    }
}

/// Where snapshots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotTarget {
    /// Published on `…/events/snapshot/<track_id>` (JPEG bytes).
    Mqtt,
    /// Written into `dir`.
    Dir,
}

/// `[source.snapshots]`: a JPEG crop of each new object.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotConfig {
    /// `mqtt` or `dir`.
    pub to: SnapshotTarget,
    /// The directory, for `to = "dir"`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Longest side of the crop, in pixels.
    #[serde(default = "d_max_side")]
    pub max_side: u32,
    /// Margin around the box, as a fraction of its size.
    #[serde(default = "d_margin")]
    pub margin: f32,
    /// JPEG quality, 1–100.
    #[serde(default = "d_quality")]
    pub quality: u8,
    /// Also send the best-scoring crop of each track when it ends.
    #[serde(default)]
    pub best: bool,
    /// `dir`: the oldest files go once the directory holds more than this.
    #[serde(default = "d_max_mb")]
    pub max_mb: f64,
    /// `dir`: files older than this go.
    #[serde(default = "d_keep_days")]
    pub keep_days: f64,
}

fn d_max_side() -> u32 {
    480
}
fn d_margin() -> f32 {
    0.15
}
fn d_quality() -> u8 {
    80
}
fn d_max_mb() -> f64 {
    256.0
}
fn d_keep_days() -> f64 {
    7.0
}

/// Best-scoring crops a source holds at once (`best = true`), planned.
pub const BEST_SNAPSHOTS_HELD: u64 = 16;

impl SnapshotConfig {
    /// Bytes the encoder needs: the RGB crop and its JPEG, plus the best
    /// crops held until their tracks end.
    pub fn planned_bytes(&self) -> u64 {
        let px = self.max_side as u64 * self.max_side as u64;
        let held = if self.best { BEST_SNAPSHOTS_HELD } else { 0 };
        3 * px + px + held * px
    }

    /// Largest JPEG kept as a track's best crop (a byte per pixel; q80
    /// crops are far smaller).
    pub fn best_limit(&self) -> usize {
        self.max_side as usize * self.max_side as usize
    }
}

/// `[[source.zones]]`: a named polygon in frame pixels.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone's name, as events list it.
    pub name: String,
    /// Corners `[[x, y], …]`, at least three.
    pub points: Vec<[f32; 2]>,
}

/// The event keys of one stream source, gathered.
#[derive(Debug, Clone, PartialEq)]
pub struct SceneConfig {
    /// What is published.
    pub publish: Vec<Publish>,
    /// Named zones.
    pub zones: Vec<ZoneConfig>,
    /// Areas whose detections are ignored.
    pub mask: Vec<Vec<[f32; 2]>>,
    /// Event policy.
    pub events: EventsConfig,
    /// Snapshots, when configured.
    pub snapshots: Option<SnapshotConfig>,
}

impl SceneConfig {
    /// Whether `what` is published; a source without `publish` sends events.
    pub fn publishes(&self, what: Publish) -> bool {
        self.publish.contains(&what)
    }

    /// Bytes this source's events need beyond its frames.
    pub fn planned_bytes(&self) -> u64 {
        self.snapshots.as_ref().map_or(0, |s| s.planned_bytes())
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let e = &self.events;
        let mut push = |k: &str, why: String| out.push(Issue::new(k, why));
        if self.publish.is_empty() {
            push(
                "publish",
                "is empty; say [\"events\"], [\"frames\"] or both".into(),
            );
        }
        if !(e.min_move >= 0.0 && e.min_move.is_finite()) {
            push(
                "events.min_move",
                format!("{} is not a fraction ≥ 0", e.min_move),
            );
        }
        if !(e.update_interval_s >= 0.0 && e.update_interval_s.is_finite()) {
            push(
                "events.update_interval_s",
                format!(
                    "{} is not a number of seconds ≥ 0 (0: no timed updates)",
                    e.update_interval_s
                ),
            );
        }
        if !(e.end_after_s > 0.0 && e.end_after_s.is_finite()) {
            push(
                "events.end_after_s",
                format!("{} is not a positive number of seconds", e.end_after_s),
            );
        }
        if e.min_frames == 0 {
            push("events.min_frames", "must be at least 1".into());
        }
        if !(e.silent_grace_s >= 0.0 && e.silent_grace_s.is_finite()) {
            push(
                "events.silent_grace_s",
                format!("{} is not a number of seconds ≥ 0", e.silent_grace_s),
            );
        }
        if !(e.match_iou > 0.0 && e.match_iou <= 1.0) {
            push(
                "events.match_iou",
                format!("{} is not in (0, 1]", e.match_iou),
            );
        }
        if !(0.0..=1.0).contains(&e.high_score) {
            push(
                "events.high_score",
                format!("{} is not in [0, 1]", e.high_score),
            );
        }
        if e.max_tracks == 0 {
            push("events.max_tracks", "must be at least 1".into());
        }
        for (i, z) in self.zones.iter().enumerate() {
            if let Err(why) = crate::base::topic::check_segment(&z.name).map_err(|e| e.to_string())
            {
                push(&format!("zones[{i}].name"), why);
            }
            if self.zones[..i].iter().any(|o| o.name == z.name) {
                push(
                    &format!("zones[{i}].name"),
                    format!("{:?} is used by another zone", z.name),
                );
            }
            if z.points.len() < 3 {
                push(
                    &format!("zones[{i}].points"),
                    format!("has {} point(s); a zone needs at least 3", z.points.len()),
                );
            }
        }
        for name in &e.only_zones {
            if !self.zones.iter().any(|z| &z.name == name) {
                push(
                    "events.only_zones",
                    format!("{name:?} is not a zone of this source; add a [[source.zones]] with that name"),
                );
            }
        }
        for (i, m) in self.mask.iter().enumerate() {
            if m.len() < 3 {
                push(
                    &format!("mask[{i}]"),
                    format!("has {} point(s); a mask polygon needs at least 3", m.len()),
                );
            }
        }
        if let Some(s) = &self.snapshots {
            if s.to == SnapshotTarget::Dir && s.dir.is_none() {
                push("snapshots.dir", "is required with to = \"dir\"".into());
            }
            if !(16..=4096).contains(&s.max_side) {
                push(
                    "snapshots.max_side",
                    format!("{} is not between 16 and 4096", s.max_side),
                );
            }
            if !(1..=100).contains(&s.quality) {
                push(
                    "snapshots.quality",
                    format!("{} is not between 1 and 100", s.quality),
                );
            }
            if !(s.margin >= 0.0 && s.margin <= 4.0) {
                push(
                    "snapshots.margin",
                    format!("{} is not a fraction between 0 and 4", s.margin),
                );
            }
            if !(s.max_mb > 0.0 && s.max_mb.is_finite()) {
                push(
                    "snapshots.max_mb",
                    format!("{} is not a positive size", s.max_mb),
                );
            }
            if !(s.keep_days > 0.0 && s.keep_days.is_finite()) {
                push(
                    "snapshots.keep_days",
                    format!("{} is not a positive number of days", s.keep_days),
                );
            }
        }
        out
    }
}

/// The default for a stream source without `publish`: events.
pub fn default_publish() -> Vec<Publish> {
    vec![Publish::Events]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scene() -> SceneConfig {
        SceneConfig {
            publish: default_publish(),
            zones: vec![ZoneConfig {
                name: "door".into(),
                points: vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]],
            }],
            mask: Vec::new(),
            events: EventsConfig::default(),
            snapshots: None,
        }
    }

    #[test]
    fn defaults_are_valid_and_bad_keys_are_named() {
        assert!(scene().validate().is_empty());
        let mut s = scene();
        s.events.only_zones = vec!["gate".into()];
        s.events.end_after_s = 0.0;
        s.zones.push(ZoneConfig {
            name: "door".into(),
            points: vec![[0.0, 0.0]],
        });
        s.snapshots = Some(SnapshotConfig {
            to: SnapshotTarget::Dir,
            dir: None,
            max_side: 480,
            margin: 0.1,
            quality: 80,
            best: false,
            max_mb: 1.0,
            keep_days: 1.0,
        });
        let keys: Vec<String> = s.validate().into_iter().map(|i| i.key).collect();
        assert_eq!(
            keys,
            [
                "events.end_after_s",
                "zones[1].name",
                "zones[1].points",
                "events.only_zones",
                "snapshots.dir"
            ]
        );
    }
}
