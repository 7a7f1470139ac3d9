//! Every MQTT topic edgewatch publishes to, in one place. Under
//! `{prefix}/{device}`:
//!
//! | topic | what | retained |
//! |---|---|---|
//! | `status` | `online` / `offline` (the last will) | yes |
//! | `{source}/detections` | one message per frame or file | no |
//! | `{source}/events` | `new`, `update`, `end` of tracked objects | no |
//! | `{source}/events/snapshot/{track}` | JPEG of a new object | no |
//! | `{source}/objects` | the objects in view now, with counts | yes |
//!
//! Home Assistant discovery goes under its own prefix:
//! `{ha_prefix}/{component}/{node}/{object}/config`.
//! The device and source names are topic segments, checked by
//! [`check_segment`].

use std::fmt;

/// A device or source name that cannot be one topic segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentError {
    /// Nothing at all.
    #[error("must not be empty")]
    Empty,
    /// A separator, wildcard or control character.
    #[error("{value:?} contains {found:?}, which cannot appear in an MQTT topic segment; use letters, digits, '-' or '_'")]
    Forbidden {
        /// The name as given.
        value: String,
        /// The first character that cannot appear.
        found: char,
    },
}

/// Topic segments must not contain MQTT wildcards or separators.
pub fn check_segment(value: &str) -> Result<(), SegmentError> {
    if value.is_empty() {
        return Err(SegmentError::Empty);
    }
    if let Some(c) = value
        .chars()
        .find(|c| matches!(c, '/' | '+' | '#') || c.is_control())
    {
        return Err(SegmentError::Forbidden {
            value: value.to_string(),
            found: c,
        });
    }
    Ok(())
}

/// The topic below a source: what kind of message goes there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// Per-frame or per-file detections.
    Detections,
    /// Event messages.
    Events,
    /// One new object's snapshot.
    Snapshot(u64),
    /// The retained objects-in-view state.
    Objects,
}

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leaf::Detections => f.write_str("detections"),
            Leaf::Events => f.write_str("events"),
            Leaf::Snapshot(id) => write!(f, "events/snapshot/{id}"),
            Leaf::Objects => f.write_str("objects"),
        }
    }
}

/// `{prefix}/{device}/{source}/{leaf}`.
pub fn source_topic(prefix: &str, device: &str, source: &str, leaf: &Leaf) -> String {
    format!("{prefix}/{device}/{source}/{leaf}")
}

/// `{prefix}/{device}/status`, retained `online` / `offline`.
pub fn status_topic(prefix: &str, device: &str) -> String {
    format!("{prefix}/{device}/status")
}

/// Home Assistant's discovery topic for one entity:
/// `{ha_prefix}/{component}/{node}/{object}/config`.
pub fn discovery_topic(ha_prefix: &str, component: &str, node: &str, object: &str) -> String {
    format!("{ha_prefix}/{component}/{node}/{object}/config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_is_laid_out_under_prefix_device_and_source() {
        let t = |leaf| source_topic("edgewatch", "nano-01", "cam0", &leaf);
        assert_eq!(t(Leaf::Detections), "edgewatch/nano-01/cam0/detections");
        assert_eq!(t(Leaf::Events), "edgewatch/nano-01/cam0/events");
        assert_eq!(
            t(Leaf::Snapshot(7)),
            "edgewatch/nano-01/cam0/events/snapshot/7"
        );
        assert_eq!(t(Leaf::Objects), "edgewatch/nano-01/cam0/objects");
        assert_eq!(
            status_topic("edgewatch", "nano-01"),
            "edgewatch/nano-01/status"
        );
        assert_eq!(
            discovery_topic("homeassistant", "sensor", "edgewatch_n", "cam0_count"),
            "homeassistant/sensor/edgewatch_n/cam0_count/config"
        );
    }

    #[test]
    fn a_segment_with_a_separator_or_wildcard_is_refused_by_name() {
        assert_eq!(check_segment(""), Err(SegmentError::Empty));
        for bad in ["a/b", "a+", "#", "x\ny"] {
            let e = check_segment(bad).unwrap_err().to_string();
            assert!(e.contains("cannot appear in an MQTT topic segment"), "{e}");
        }
        assert!(check_segment("cam_0-left").is_ok());
    }
}
