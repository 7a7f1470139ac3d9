//! YOLO box decoding: YOLOv5-style `1×N×(5+C)` (objectness × class score)
//! and YOLOv8/v11-style `1×(4+C)×N` (class scores only), boxes as
//! centre-x, centre-y, width, height in input pixels.

use super::merge::{merge, MatchMetric, MergeConfig, MergeStrategy};
use super::placement::Placement;
use super::{DecodeConfig, Detection, OutputError};

/// How the rows of a YOLO output are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YoloLayout {
    /// `[1, N, 5 + C]`: cx, cy, w, h, objectness, C class scores per row.
    V5,
    /// `[1, 4 + C, N]`: cx, cy, w, h, C class scores per column.
    V8,
}

/// A YOLO output whose layout and class count are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct YoloHead {
    /// Row layout.
    pub layout: YoloLayout,
    /// Classes.
    pub classes: usize,
    /// Candidate boxes per image.
    pub candidates: usize,
}

/// Candidates kept for NMS, best first, as Ultralytics' `max_nms`.
const MAX_NMS: usize = 30_000;

impl YoloHead {
    /// Tells the layout from the output `shape`, checked against `labels`
    /// (the label count, when known). The error shows the shape found and
    /// the layouts supported.
    pub fn from_shape(shape: &[usize], labels: Option<usize>) -> Result<YoloHead, OutputError> {
        let supported = |with: String| OutputError::Layout {
            family: "a YOLO model",
            expected: "[1, N, 5+C] (YOLOv5) or [1, 4+C, N] (YOLOv8/v11)",
            with,
            shape: shape.to_vec(),
            hint: "Is model.family right, or do the labels match the model?",
        };
        let (a, b) = match shape {
            [1, a, b] => (*a, *b),
            _ => return Err(supported(String::new())),
        };
        let v5 = |c: usize| YoloHead {
            layout: YoloLayout::V5,
            classes: c,
            candidates: a,
        };
        let v8 = |c: usize| YoloHead {
            layout: YoloLayout::V8,
            classes: c,
            candidates: b,
        };
        match labels {
            Some(c) => match (b == 5 + c, a == 4 + c) {
                // Both fit only for tiny N; real outputs have N far above 4+C.
                (true, true) if a < b => Ok(v8(c)),
                (true, _) => Ok(v5(c)),
                (_, true) => Ok(v8(c)),
                _ => Err(supported(format!(
                    " with C = {c} labels, i.e. [1, N, {}] or [1, {}, N]",
                    5 + c,
                    4 + c
                ))),
            },
            // Without labels, N (thousands of anchors) is the long axis.
            None if a < b && a > 4 => Ok(v8(a - 4)),
            None if b > 5 && b <= a => Ok(v5(b - 5)),
            None => Err(supported(String::new())),
        }
    }

    /// Boxes from one image's output `data`, mapped through `place` into
    /// frame pixels, thresholded, class-filtered (`allowed[c]`), NMS'd per
    /// class and capped at `max_detections`.
    pub fn decode(
        &self,
        data: &[f32],
        cfg: &DecodeConfig,
        threshold: f32,
        labels: &[String],
        allowed: &[bool],
        place: &Placement,
    ) -> Result<Vec<Detection>, OutputError> {
        let (n, c) = (self.candidates, self.classes);
        let per_image = n * (c + if self.layout == YoloLayout::V5 { 5 } else { 4 });
        if data.len() < per_image {
            return Err(OutputError::Short {
                what: "YOLO",
                got: data.len(),
                want: per_image,
            });
        }
        let mut found: Vec<Detection> = Vec::new();
        for i in 0..n {
            // (value k of candidate i)
            let at = |k: usize| match self.layout {
                YoloLayout::V5 => data[i * (c + 5) + k],
                YoloLayout::V8 => data[k * n + i],
            };
            let (first_class, objectness) = match self.layout {
                YoloLayout::V5 => (5, at(4)),
                YoloLayout::V8 => (4, 1.0),
            };
            if objectness <= threshold {
                continue;
            }
            let mut best: Option<(usize, f32)> = None;
            for k in 0..c {
                if !allowed.get(k).copied().unwrap_or(true) {
                    continue;
                }
                let s = at(first_class + k) * objectness;
                let better = match best {
                    Some((_, b)) => s > b,
                    None => true,
                };
                if better {
                    best = Some((k, s));
                }
            }
            let Some((class, score)) = best else { continue };
            if score <= threshold || !score.is_finite() {
                continue;
            }
            let (cx, cy, w, h) = (at(0), at(1), at(2), at(3));
            let (x1, y1) = place.to_frame(cx - w / 2.0, cy - h / 2.0);
            let (x2, y2) = place.to_frame(cx + w / 2.0, cy + h / 2.0);
            if x2 - x1 < 1.0 || y2 - y1 < 1.0 {
                continue;
            }
            found.push(Detection {
                label: labels
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| format!("class{class}")),
                class_id: class as u32,
                score: (score * 1000.0).round() / 1000.0,
                bbox: [x1, y1, x2, y2],
                quad: None,
                read: None,
            });
        }
        if found.len() > MAX_NMS {
            found.sort_by(|a, b| b.score.total_cmp(&a.score));
            found.truncate(MAX_NMS);
        }
        let mut kept = merge(
            found,
            &MergeConfig {
                strategy: MergeStrategy::Nms,
                metric: MatchMetric::Iou,
                threshold: cfg.iou_threshold,
                class_agnostic: false,
            },
        );
        kept.truncate(cfg.max_detections);
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn layouts_are_told_apart_by_shape_and_label_count() {
        let v8 = YoloHead::from_shape(&[1, 84, 8400], Some(80)).unwrap();
        assert_eq!(
            (v8.layout, v8.classes, v8.candidates),
            (YoloLayout::V8, 80, 8400)
        );
        let v5 = YoloHead::from_shape(&[1, 25200, 85], Some(80)).unwrap();
        assert_eq!(
            (v5.layout, v5.classes, v5.candidates),
            (YoloLayout::V5, 80, 25200)
        );
        assert_eq!(YoloHead::from_shape(&[1, 84, 8400], None).unwrap(), v8);
        assert_eq!(YoloHead::from_shape(&[1, 25200, 85], None).unwrap(), v5);
        let err = YoloHead::from_shape(&[1, 84, 8400], Some(3))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1, 84, 8400]") && err.contains("[1, N, 8]"),
            "{err}"
        );
        let err = YoloHead::from_shape(&[1, 1, 640, 640], None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("[1, 1, 640, 640]") && err.contains("YOLOv8"),
            "{err}"
        );
    }

    fn place() -> Placement {
        // A 1280×640 frame letterboxed into 640×640: scale 0.5, 160 px pad.
        Placement::letterbox([0.0, 0.0, 1280.0, 640.0], 640, 640)
    }

    #[test]
    fn v8_rows_decode_threshold_nms_and_map_back() {
        let head = YoloHead::from_shape(&[1, 6, 3], Some(2)).unwrap();
        // Columns: a strong "b" box, a weaker overlapping "b" box, a weak "a".
        #[rustfmt::skip]
        let data = [
            100.0, 104.0, 400.0, // cx
            200.0, 200.0, 300.0, // cy
            40.0, 40.0, 20.0,    // w
            20.0, 20.0, 20.0,    // h
            0.1, 0.0, 0.2,       // score a
            0.9, 0.6, 0.0,       // score b
        ];
        let cfg = DecodeConfig::default();
        let dets = head
            .decode(&data, &cfg, 0.25, &labels(), &[true, true], &place())
            .unwrap();
        assert_eq!(dets.len(), 1, "{dets:?}");
        assert_eq!(dets[0].label, "b");
        assert_eq!(dets[0].score, 0.9);
        // (80..120, 190..210) in input → x/0.5, (y-160)/0.5.
        assert_eq!(dets[0].bbox, [160.0, 60.0, 240.0, 100.0]);
        // Filtering "b" out leaves nothing above 0.25.
        let only_a = head
            .decode(&data, &cfg, 0.25, &labels(), &[true, false], &place())
            .unwrap();
        assert!(only_a.is_empty(), "{only_a:?}");
        let low = head
            .decode(&data, &cfg, 0.15, &labels(), &[true, false], &place())
            .unwrap();
        assert_eq!(low.len(), 1);
        assert_eq!(low[0].label, "a");
    }

    #[test]
    fn v5_score_is_objectness_times_class() {
        let head = YoloHead::from_shape(&[1, 2, 7], Some(2)).unwrap();
        assert_eq!(head.layout, YoloLayout::V5);
        #[rustfmt::skip]
        let data = [
            320.0, 320.0, 64.0, 64.0, 0.5, 0.9, 0.1, // 0.45 for "a"
            100.0, 300.0, 10.0, 10.0, 0.3, 0.5, 0.5, // 0.15: dropped
        ];
        let mut cfg = DecodeConfig::default();
        let dets = head
            .decode(&data, &cfg, 0.25, &labels(), &[true, true], &place())
            .unwrap();
        assert_eq!(dets.len(), 1);
        assert_eq!(dets[0].score, 0.45);
        assert_eq!(dets[0].bbox, [576.0, 256.0, 704.0, 384.0]);
        cfg.max_detections = 1;
        let mut two = data;
        two[7..].copy_from_slice(&[500.0, 300.0, 10.0, 10.0, 0.9, 0.9, 0.0]);
        let capped = head
            .decode(&two, &cfg, 0.25, &labels(), &[true, true], &place())
            .unwrap();
        assert_eq!(capped.len(), 1);
        assert_eq!(capped[0].score, 0.81);
    }

    #[test]
    fn a_short_output_is_an_error_not_a_panic() {
        let head = YoloHead::from_shape(&[1, 6, 3], Some(2)).unwrap();
        let err = head
            .decode(
                &[0.0; 5],
                &DecodeConfig::default(),
                0.25,
                &labels(),
                &[],
                &place(),
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("18 were expected"), "{err}");
    }
}
