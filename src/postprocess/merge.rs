//! Merging boxes found by several passes over one frame (neighbouring tiles,
//! or tiles plus a whole-frame pass): greedy NMS or NMM, matched by IoU or
//! IoS, as SAHI offers them.

use serde::Deserialize;

use super::Detection;

/// How two boxes are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMetric {
    /// Intersection over union.
    Iou,
    /// Intersection over the smaller box: a box cut at a tile edge still
    /// matches the whole one.
    #[default]
    Ios,
}

/// What happens to matching boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeStrategy {
    /// Keep the best-scoring box, drop the boxes it matches.
    Nms,
    /// Grow the best-scoring box to cover the boxes it matches (greedy NMM).
    #[default]
    Nmm,
}

/// How boxes from several passes are merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeConfig {
    /// NMS or NMM.
    pub strategy: MergeStrategy,
    /// IoU or IoS.
    pub metric: MatchMetric,
    /// Boxes match when the metric is at least this.
    pub threshold: f32,
    /// Match boxes of different classes too.
    pub class_agnostic: bool,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            strategy: MergeStrategy::Nmm,
            metric: MatchMetric::Ios,
            threshold: 0.5,
            class_agnostic: false,
        }
    }
}

fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

fn intersection(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    w * h
}

/// The match metric of two boxes, in [0, 1].
pub fn overlap(metric: MatchMetric, a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let inter = intersection(a, b);
    let denom = match metric {
        MatchMetric::Iou => area(a) + area(b) - inter,
        MatchMetric::Ios => area(a).min(area(b)),
    };
    if denom <= 0.0 {
        0.0
    } else {
        inter / denom
    }
}

/// Merges `dets` under `cfg`. The result is ordered by descending score.
pub fn merge(mut dets: Vec<Detection>, cfg: &MergeConfig) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut used = vec![false; dets.len()];
    let mut out: Vec<Detection> = Vec::with_capacity(dets.len());
    for i in 0..dets.len() {
        if used[i] {
            continue;
        }
        used[i] = true;
        let mut keep = dets[i].clone();
        for j in i + 1..dets.len() {
            if used[j] || (!cfg.class_agnostic && dets[j].class_id != keep.class_id) {
                continue;
            }
            // NMM compares against the grown box so chains along a long
            // object are absorbed; NMS compares against the kept one.
            if overlap(cfg.metric, &keep.bbox, &dets[j].bbox) >= cfg.threshold {
                used[j] = true;
                if cfg.strategy == MergeStrategy::Nmm {
                    let b = dets[j].bbox;
                    keep.bbox = [
                        keep.bbox[0].min(b[0]),
                        keep.bbox[1].min(b[1]),
                        keep.bbox[2].max(b[2]),
                        keep.bbox[3].max(b[3]),
                    ];
                    // A grown box is no longer the quad it came from.
                    keep.quad = None;
                }
            }
        }
        out.push(keep);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(class_id: u32, score: f32, bbox: [f32; 4]) -> Detection {
        Detection {
            label: format!("c{class_id}"),
            class_id,
            score,
            bbox,
            quad: None,
            read: None,
        }
    }

    #[test]
    fn metrics() {
        let a = [0.0, 0.0, 10.0, 10.0];
        let b = [5.0, 0.0, 15.0, 10.0];
        assert!((overlap(MatchMetric::Iou, &a, &b) - 50.0 / 150.0).abs() < 1e-6);
        assert!((overlap(MatchMetric::Ios, &a, &b) - 0.5).abs() < 1e-6);
        let inner = [2.0, 2.0, 4.0, 4.0];
        assert_eq!(overlap(MatchMetric::Ios, &a, &inner), 1.0);
        assert_eq!(
            overlap(MatchMetric::Iou, &a, &[20.0, 20.0, 30.0, 30.0]),
            0.0
        );
        assert_eq!(overlap(MatchMetric::Iou, &a, &[3.0, 3.0, 3.0, 3.0]), 0.0);
    }

    #[test]
    fn nms_keeps_the_best_of_a_cluster_per_class() {
        let dets = vec![
            det(0, 0.6, [0.0, 0.0, 10.0, 10.0]),
            det(0, 0.9, [1.0, 0.0, 11.0, 10.0]),
            det(1, 0.8, [1.0, 0.0, 11.0, 10.0]),
            det(0, 0.7, [50.0, 50.0, 60.0, 60.0]),
        ];
        let cfg = MergeConfig {
            strategy: MergeStrategy::Nms,
            metric: MatchMetric::Iou,
            ..MergeConfig::default()
        };
        let out = merge(dets.clone(), &cfg);
        let scores: Vec<f32> = out.iter().map(|d| d.score).collect();
        assert_eq!(scores, vec![0.9, 0.8, 0.7]);
        let agnostic = merge(
            dets,
            &MergeConfig {
                class_agnostic: true,
                ..cfg
            },
        );
        assert_eq!(agnostic.len(), 2);
    }

    #[test]
    fn nmm_joins_a_box_cut_by_a_tile_edge() {
        // An object split at x = 100 by two tiles, plus the whole-frame pass.
        let dets = vec![
            det(0, 0.8, [60.0, 10.0, 100.0, 30.0]),
            det(0, 0.7, [96.0, 10.0, 140.0, 30.0]),
            det(0, 0.9, [58.0, 9.0, 120.0, 31.0]),
        ];
        let out = merge(dets, &MergeConfig::default());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bbox, [58.0, 9.0, 140.0, 31.0]);
        assert_eq!(out[0].score, 0.9);
    }

    #[test]
    fn an_object_cut_into_four_by_a_tile_corner_is_one_box() {
        // The object [80, 80, 140, 140] is cut at x = 100 and y = 110: each of
        // four tiles sees a part; the whole-frame pass sees all of it.
        let parts = vec![
            det(2, 0.6, [80.0, 80.0, 100.0, 110.0]),
            det(2, 0.5, [100.0, 80.0, 140.0, 110.0]),
            det(2, 0.55, [80.0, 110.0, 100.0, 140.0]),
            det(2, 0.7, [100.0, 110.0, 140.0, 140.0]),
            // Another class in the same place stays its own object.
            det(1, 0.4, [90.0, 90.0, 130.0, 130.0]),
        ];
        let mut with_whole = parts.clone();
        with_whole.push(det(2, 0.9, [81.0, 79.0, 139.0, 141.0]));
        let out = merge(with_whole, &MergeConfig::default());
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].bbox, [80.0, 79.0, 140.0, 141.0]);
        assert_eq!(out[1].class_id, 1);
        // Without the whole-frame pass the quarters only touch each other;
        // NMM with IoS still cannot join parts that do not overlap, which is
        // why tiles overlap: every object small enough lies whole in one.
        let out = merge(parts, &MergeConfig::default());
        assert_eq!(out.iter().filter(|d| d.class_id == 2).count(), 4);
    }

    #[test]
    fn overlapping_tiles_reporting_the_same_object_keep_one() {
        // Seen whole by two (or four) overlapping tiles: identical boxes up to
        // rounding; NMS and NMM both keep one, NMM's the union.
        let seen = vec![
            det(0, 0.9, [400.0, 304.0, 464.0, 368.0]),
            det(0, 0.88, [400.5, 304.0, 464.0, 368.5]),
            det(0, 0.91, [399.5, 303.5, 464.0, 368.0]),
            det(0, 0.9, [400.0, 304.0, 464.5, 368.0]),
        ];
        for strategy in [MergeStrategy::Nms, MergeStrategy::Nmm] {
            let out = merge(
                seen.clone(),
                &MergeConfig {
                    strategy,
                    ..MergeConfig::default()
                },
            );
            assert_eq!(out.len(), 1, "{strategy:?}");
            assert_eq!(out[0].score, 0.91);
        }
    }
}
