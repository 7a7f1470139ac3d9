//! The FP16 sanity check: a new engine and the CPU backend run the same
//! reference frame, and the engine is used only if they agree.
//!
//! FP16 changes every value a little; a broken build (a wrong layer fusion,
//! an overflow in half precision) changes them a lot. Both the raw output
//! and the detections are compared, so a map that is close on average but
//! loses the one small text line still fails.

use image::{Rgb, RgbImage};

use super::cache::CheckRecord;
use crate::infer::Outputs;
use crate::postprocess::Detection;

/// Compares the engine's first output and detections with the CPU's.
/// Returns the record, or why the engine is refused.
pub fn compare(
    cpu: &Outputs,
    engine: &Outputs,
    cpu_dets: &[Detection],
    engine_dets: &[Detection],
    max_mean_diff: f64,
    min_agreement: f64,
) -> Result<CheckRecord, (CheckRecord, String)> {
    let mut record = CheckRecord {
        mean_abs_diff: f64::NAN,
        max_abs_diff: f64::NAN,
        cpu_detections: cpu_dets.len(),
        engine_detections: engine_dets.len(),
        matched: matched(cpu_dets, engine_dets),
    };
    if cpu.shape != engine.shape || cpu.data.len() != engine.data.len() {
        let why = format!(
            "the engine's output is {:?}, the CPU's {:?}",
            engine.shape, cpu.shape
        );
        return Err((record, why));
    }
    let (mut sum, mut max) = (0f64, 0f64);
    let mut finite = true;
    for (a, b) in cpu.data.iter().zip(&engine.data) {
        finite &= b.is_finite();
        let d = (*a as f64 - *b as f64).abs();
        sum += d;
        max = max.max(d);
    }
    record.mean_abs_diff = sum / cpu.data.len().max(1) as f64;
    record.max_abs_diff = max;
    if !finite {
        return Err((record, "the engine's output has NaN or infinite values (FP16 overflow?); try precision = \"fp32\"".into()));
    }
    if record.mean_abs_diff > max_mean_diff {
        let why = format!(
            "outputs differ by {:.4} on average (limit {max_mean_diff}, tensorrt.max_mean_diff)",
            record.mean_abs_diff
        );
        return Err((record, why));
    }
    let most = cpu_dets.len().max(engine_dets.len());
    if most > 0 && (record.matched as f64) < min_agreement * most as f64 {
        let why = format!(
            "detections disagree: {} of {} matched (CPU {}, engine {}; limit {min_agreement}, tensorrt.min_agreement)",
            record.matched,
            most,
            cpu_dets.len(),
            engine_dets.len()
        );
        return Err((record, why));
    }
    Ok(record)
}

/// Pairs of the same class with IoU ≥ 0.5, each detection used once,
/// best overlaps first.
pub fn matched(a: &[Detection], b: &[Detection]) -> usize {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            if x.class_id == y.class_id {
                let o = iou(&x.bbox, &y.bbox);
                if o >= 0.5 {
                    pairs.push((o, i, j));
                }
            }
        }
    }
    pairs.sort_by(|p, q| q.0.total_cmp(&p.0));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut n = 0;
    for (_, i, j) in pairs {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            n += 1;
        }
    }
    n
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

/// The generated reference frame when none is configured: 1280×720, light
/// paper with dark bars of several heights and spacings (text-like strokes
/// for DB, edges for every family), and a gradient so no value is constant.
pub fn test_card() -> RgbImage {
    let (w, h) = (1280u32, 720u32);
    let mut img = RgbImage::from_fn(w, h, |x, y| {
        let v = 200 + ((x + y) % 40) as u8;
        Rgb([v, v, v.saturating_sub(10)])
    });
    let mut y = 40;
    let mut row = 0u32;
    while y + 60 < h {
        let stroke = 8 + (row % 5) * 6;
        let mut x = 40 + (row * 37) % 120;
        while x + 30 < w - 40 {
            let len = 20 + ((x * 7 + row * 13) % 90);
            for yy in y..y + stroke {
                for xx in x..(x + len).min(w - 40) {
                    img.put_pixel(xx, yy, Rgb([25, 25, 30]));
                }
            }
            x += len + 12 + (row % 3) * 10;
        }
        y += stroke + 28 + (row % 4) * 8;
        row += 1;
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::model::LoadedModel;
    use crate::infer::{Engine, ModelConfig};

    fn det(class: u32, b: [f32; 4]) -> Detection {
        Detection {
            label: "x".into(),
            class_id: class,
            score: 0.9,
            bbox: b,
            quad: None,
            read: None,
        }
    }

    #[test]
    fn matching_pairs_each_detection_once() {
        let a = [det(0, [0., 0., 10., 10.]), det(0, [20., 0., 30., 10.])];
        let b = [det(0, [1., 0., 11., 10.]), det(1, [20., 0., 30., 10.])];
        assert_eq!(matched(&a, &b), 1, "other class does not match");
        let c = [det(0, [0., 0., 10., 10.])];
        assert_eq!(matched(&a, &c), 1);
        assert_eq!(matched(&c, &a), 1);
        assert_eq!(matched(&a, &[]), 0);
    }

    fn outputs(data: Vec<f32>) -> Outputs {
        Outputs {
            shape: vec![1, 1, 1, data.len()],
            data,
        }
    }

    #[test]
    fn small_differences_pass_and_large_ones_are_refused() {
        let cpu = outputs(vec![0.1, 0.5, 0.9, 0.0]);
        let near = outputs(vec![0.1005, 0.499, 0.9, 0.001]);
        let d = [det(0, [0., 0., 10., 10.])];
        let rec = compare(&cpu, &near, &d, &d, 0.02, 0.9).unwrap();
        assert!(rec.mean_abs_diff < 0.001, "{rec:?}");
        assert_eq!(rec.matched, 1);

        let far = outputs(vec![0.5, 0.5, 0.5, 0.5]);
        let (_, why) = compare(&cpu, &far, &d, &d, 0.02, 0.9).unwrap_err();
        assert!(why.contains("max_mean_diff"), "{why}");

        let (_, why) = compare(&cpu, &near, &d, &[], 0.02, 0.9).unwrap_err();
        assert!(why.contains("0 of 1 matched"), "{why}");

        let nan = outputs(vec![0.1, f32::NAN, 0.9, 0.0]);
        let (_, why) = compare(&cpu, &nan, &d, &d, 0.02, 0.9).unwrap_err();
        assert!(why.contains("NaN"), "{why}");

        let other = Outputs {
            shape: vec![1, 4],
            data: vec![0.0; 4],
        };
        assert!(compare(&cpu, &other, &d, &d, 0.02, 0.9).is_err());
    }

    /// The real model on the test card: the CPU agrees with itself, and an
    /// output degraded the way a broken FP16 build degrades it is refused.
    #[test]
    fn the_test_card_gives_the_reference_model_something_to_find() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-det-v4.onnx");
        let cfg = ModelConfig::new(path);
        let model = LoadedModel::load(&cfg, [1, 3, 736, 1280]).unwrap();
        let card = test_card();
        let mut pre =
            crate::infer::preprocess::Preprocessor::with_normalisation([0.5; 3], [0.5; 3], true);
        let tensor = pre.to_tensor(&card, 1280, 736);
        let mut engine = model.tract.engine().unwrap();
        let out = engine.run(tensor.clone()).unwrap();
        let again = engine.run(tensor).unwrap();
        let rec = compare(&out, &again, &[], &[], 0.02, 0.9).unwrap();
        assert_eq!(rec.max_abs_diff, 0.0);
        let text_pixels = out.data.iter().filter(|v| **v > 0.3).count();
        assert!(
            text_pixels > out.data.len() / 50,
            "the card must look like text to DB: {text_pixels}"
        );
        // A map off by a uniform 0.05 (half-precision gone wrong) is refused.
        let mut shifted = out.clone();
        shifted
            .data
            .iter_mut()
            .for_each(|v| *v = (*v + 0.05).min(1.0));
        assert!(compare(&out, &shifted, &[], &[], 0.02, 0.9).is_err());
    }
}
