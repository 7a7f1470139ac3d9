//! The detection message schema (`edgewatch.detections/1`) and its topics.

use serde::{Deserialize, Serialize};

use crate::base::frame::FrameMeta;
use crate::infer::detector::{FrameResult, Timing};
use crate::infer::model::ModelInfo;
use crate::postprocess::Detection;

/// Schema name and major version; a breaking change bumps the number.
pub const SCHEMA: &str = "edgewatch.detections/1";

/// One message per frame.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// Always [`SCHEMA`].
    pub schema: &'static str,
    /// Stable id for de-duplication.
    pub id: String,
    /// Device name from the config.
    pub device: String,
    /// Source name.
    pub source: String,
    /// Per-source sequence number in this process.
    pub seq: u64,
    /// RFC 3339 UTC time with milliseconds.
    pub captured_at: String,
    /// The frame.
    pub image: ImageInfo,
    /// The model.
    pub model: ModelRef,
    /// Stage timings in milliseconds.
    pub timing_ms: Timing,
    /// What was found.
    pub detections: Vec<Detection>,
}

/// Frame description in a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The file as it was found, for file sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `[width, height]` the frame was decoded at when it was larger than
    /// the memory plan allows (a big scan): text is seen at that scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaled_to: Option<[u32; 2]>,
}

/// Model description in a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelRef {
    /// Model name.
    pub name: String,
    /// sha256 of the model file.
    pub sha256: String,
    /// Backend that ran it.
    pub backend: String,
}

impl Message {
    /// Builds the message for one processed frame.
    pub fn new(device: &str, meta: &FrameMeta, model: &ModelInfo, result: &FrameResult) -> Message {
        let r1 = |v: f64| (v * 10.0).round() / 10.0;
        Message {
            schema: SCHEMA,
            id: meta.id.clone(),
            device: device.to_string(),
            source: meta.source.clone(),
            seq: meta.seq,
            captured_at: humantime::format_rfc3339_millis(meta.captured_at).to_string(),
            image: ImageInfo {
                width: result.width,
                height: result.height,
                path: meta.path.as_ref().map(|p| p.display().to_string()),
                scaled_to: result.scaled_to,
            },
            model: ModelRef {
                name: model.name.clone(),
                sha256: model.sha256.clone(),
                backend: model.backend.to_string(),
            },
            timing_ms: Timing {
                decode: r1(result.timing.decode),
                infer: r1(result.timing.infer),
                post: r1(result.timing.post),
                read: r1(result.timing.read),
                total: r1(result.timing.total),
            },
            detections: result.detections.clone(),
        }
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("messages always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn message_has_the_documented_shape() {
        let meta = FrameMeta {
            source: "inbox".into(),
            seq: 7,
            id: "inbox-00ff".into(),
            captured_at: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            path: Some("/in/a.jpg".into()),
        };
        let model = ModelInfo {
            name: "ppocr-det-v4".into(),
            sha256: "ab".into(),
            backend: "tract-cpu",
        };
        let result = FrameResult {
            width: 1920,
            height: 1080,
            scaled_to: None,
            detections: vec![Detection::from_quad(
                "text",
                0,
                0.93456,
                [[1.0, 2.0], [9.0, 2.0], [9.0, 7.0], [1.0, 7.0]],
            )],
            timing: Timing {
                decode: 4.123,
                infer: 31.0,
                post: 2.25,
                read: 0.0,
                total: 38.5,
            },
            work: Default::default(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&Message::new("nano-01", &meta, &model, &result).to_json())
                .unwrap();
        assert_eq!(v["schema"], "edgewatch.detections/1");
        assert_eq!(v["id"], "inbox-00ff");
        assert_eq!(v["device"], "nano-01");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["captured_at"], "2026-11-18T11:06:40.123Z");
        assert_eq!(v["image"]["width"], 1920);
        assert_eq!(v["image"]["path"], "/in/a.jpg");
        assert_eq!(v["model"]["backend"], "tract-cpu");
        assert_eq!(v["timing_ms"]["decode"], 4.1);
        let d = &v["detections"][0];
        assert_eq!(d["label"], "text");
        assert_eq!(d["class_id"], 0);
        assert!((d["score"].as_f64().unwrap() - 0.935).abs() < 1e-6);
        assert_eq!(d["box"], serde_json::json!([1.0, 2.0, 9.0, 7.0]));
        assert_eq!(d["quad"][2], serde_json::json!([9.0, 7.0]));
    }
}
