//! The event schema (`edgewatch.event/1`) and the objects-present state.

use serde::Serialize;

use super::tracker::Track;

/// Schema name and major version; a breaking change bumps the number.
pub const EVENT_SCHEMA: &str = "edgewatch.event/1";

/// What happened to a tracked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// It appeared (seen in `min_frames` frames, in a wanted zone).
    New,
    /// It moved or changed, or `update_interval_s` passed.
    Update,
    /// Unseen for `end_after_s`: it left.
    End,
}

/// One event message, on `{prefix}/{device}/{source}/events`.
#[derive(Debug, Clone, Serialize)]
pub struct EventMessage {
    /// Always [`EVENT_SCHEMA`].
    pub schema: &'static str,
    /// Stable id for de-duplication: `{source}-{track_id}-{n}`, n counting
    /// the track's events from 0.
    pub id: String,
    /// Device name.
    pub device: String,
    /// Source name.
    pub source: String,
    /// `new`, `update` or `end`.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The object's id, the same in all its events.
    pub track_id: u64,
    /// Class label.
    pub label: String,
    /// Class id.
    pub class_id: u32,
    /// Score in the latest frame that saw it.
    pub score: f32,
    /// Best score so far.
    pub max_score: f32,
    /// Its box `[x1, y1, x2, y2]` in that frame, in frame pixels.
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// RFC 3339 UTC, milliseconds.
    pub first_seen: String,
    /// RFC 3339 UTC, milliseconds.
    pub last_seen: String,
    /// Frames it was seen in.
    pub frames: u64,
    /// Zones its box centre is in.
    pub zones: Vec<String>,
    /// Zones it has been in since it appeared.
    pub entered_zones: Vec<String>,
    /// Where its snapshot went: the topic below the source, or the file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// Times as messages write them.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl EventMessage {
    /// The event `kind` of `track`; `n` counts the track's events.
    pub fn new(
        device: &str,
        source: &str,
        kind: EventType,
        track: &Track,
        n: u64,
        zones: &[String],
        entered: &[String],
    ) -> EventMessage {
        EventMessage {
            schema: EVENT_SCHEMA,
            id: format!("{source}-{}-{n}", track.id),
            device: device.to_string(),
            source: source.to_string(),
            kind,
            track_id: track.id,
            label: track.label.clone(),
            class_id: track.class_id,
            score: track.score,
            max_score: track.best_score,
            bbox: track.bbox.map(|v| (v * 10.0).round() / 10.0),
            first_seen: rfc3339(track.first_seen),
            last_seen: rfc3339(track.last_seen),
            frames: track.frames,
            zones: zones.to_vec(),
            entered_zones: entered.to_vec(),
            snapshot: None,
        }
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialise")
    }
}

/// The retained state on `{prefix}/{device}/{source}/objects`: what is
/// present now, for dashboards (and Home Assistant's sensors).
#[derive(Debug, Clone, Serialize)]
pub struct ObjectsState {
    /// Confirmed objects present.
    pub count: usize,
    /// Count by label.
    pub labels: std::collections::BTreeMap<String, usize>,
    /// When this changed, RFC 3339.
    pub at: String,
    /// True while the source has sent no frame for longer than an object
    /// takes to end: the objects are kept for `events.silent_grace_s`, and
    /// then end unless frames come back.
    pub silent: bool,
}
