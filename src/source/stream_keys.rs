//! The keys every stream source (camera, replay, RTSP) takes beside its
//! own: what it publishes, motion gating, zones, masks, events and
//! snapshots. Flattened into each stream kind's table, so they are written
//! once and checked once.

use crate::base::issue::Issue;
use serde::Deserialize;

use crate::events::config::{
    default_publish, EventsConfig, Publish, SceneConfig, SnapshotConfig, ZoneConfig,
};

/// A stream's event and motion keys.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamKeys {
    /// What it publishes: `["events"]` (the default), `["frames"]` or both.
    #[serde(default = "default_publish")]
    pub publish: Vec<Publish>,
    /// Skip inference while nothing in the picture moves; with tiling, run
    /// only the tiles that changed.
    #[serde(default)]
    pub motion: bool,
    /// With `motion`, a frame is inferred whole at least this often anyway.
    #[serde(default = "super::motion::default_refresh_s")]
    pub motion_refresh_s: f64,
    /// Named zones (`[[source.zones]]`): events list those a box is in.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    /// Polygons whose detections (and motion) are ignored.
    #[serde(default)]
    pub mask: Vec<Vec<[f32; 2]>>,
    /// When objects are announced (`[source.events]`).
    #[serde(default)]
    pub events: EventsConfig,
    /// JPEG crops of new objects (`[source.snapshots]`).
    #[serde(default)]
    pub snapshots: Option<SnapshotConfig>,
}

impl Default for StreamKeys {
    fn default() -> Self {
        StreamKeys {
            publish: default_publish(),
            motion: false,
            motion_refresh_s: super::motion::default_refresh_s(),
            zones: Vec::new(),
            mask: Vec::new(),
            events: EventsConfig::default(),
            snapshots: None,
        }
    }
}

impl StreamKeys {
    /// The event keys, gathered for the scene tracker.
    pub fn scene(&self) -> SceneConfig {
        SceneConfig {
            publish: self.publish.clone(),
            zones: self.zones.clone(),
            mask: self.mask.clone(),
            events: self.events.clone(),
            snapshots: self.snapshots.clone(),
        }
    }

    /// The motion gate, when `motion = true`.
    pub fn motion_settings(&self) -> Option<super::motion::MotionSettings> {
        self.motion.then(|| super::motion::MotionSettings {
            refresh: std::time::Duration::from_secs_f64(self.motion_refresh_s.max(0.0)),
            mask: self.mask.clone(),
        })
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = self.scene().validate();
        let refresh = self.motion_refresh_s;
        if !(refresh.is_finite() && refresh > 0.0) {
            out.push(Issue::new(
                "motion_refresh_s",
                format!("{refresh} is not a positive number of seconds"),
            ));
        }
        out
    }
}
