//! Classifier outputs: logits or probabilities in, the top-k labels out, each
//! as a detection whose box is the whole frame.

use super::{Detection, OutputError};

/// A classifier output whose class count is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyHead {
    /// Classes.
    pub classes: usize,
}

impl ClassifyHead {
    /// Reads the class count from `shape` (`[1, C]` or `[1, C, 1, 1]`), checked
    /// against `labels` when known.
    pub fn from_shape(shape: &[usize], labels: Option<usize>) -> Result<ClassifyHead, OutputError> {
        let classes = match shape {
            [1, c] | [1, c, 1, 1] => *c,
            _ => {
                return Err(OutputError::Layout {
                    family: "a classifier",
                    expected: "[1, C] or [1, C, 1, 1]",
                    with: String::new(),
                    shape: shape.to_vec(),
                    hint: "Is model.family right?",
                })
            }
        };
        match labels {
            Some(n) if n != classes => Err(OutputError::LabelCount {
                classes,
                shape: shape.to_vec(),
                labels: n,
            }),
            _ => Ok(ClassifyHead { classes }),
        }
    }

    /// The `top_k` best allowed classes scoring above `threshold`, with a box
    /// covering the `frame_w`×`frame_h` frame. Logits are soft-maxed; outputs
    /// that are already probabilities (in [0, 1], summing to 1) are not.
    pub fn decode(
        &self,
        data: &[f32],
        top_k: usize,
        threshold: f32,
        labels: &[String],
        allowed: &[bool],
        (frame_w, frame_h): (u32, u32),
    ) -> Result<Vec<Detection>, OutputError> {
        let Some(scores) = data.get(..self.classes) else {
            return Err(OutputError::Short {
                what: "classifier",
                got: data.len(),
                want: self.classes,
            });
        };
        let probs = probabilities(scores);
        let mut order: Vec<usize> = (0..self.classes)
            .filter(|&c| allowed.get(c).copied().unwrap_or(true))
            .filter(|&c| probs[c] > threshold || threshold <= 0.0)
            .collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        order.truncate(top_k);
        Ok(order
            .into_iter()
            .map(|c| Detection {
                label: labels
                    .get(c)
                    .cloned()
                    .unwrap_or_else(|| format!("class{c}")),
                class_id: c as u32,
                score: (probs[c] * 1000.0).round() / 1000.0,
                bbox: [0.0, 0.0, frame_w as f32, frame_h as f32],
                quad: None,
                read: None,
            })
            .collect())
    }
}

/// `scores` as probabilities: unchanged when they already are, else softmax.
pub fn probabilities(scores: &[f32]) -> Vec<f32> {
    let sum: f32 = scores.iter().sum();
    if scores.iter().all(|p| (0.0..=1.0).contains(p)) && (sum - 1.0).abs() < 1e-3 {
        return scores.to_vec();
    }
    let max = scores.iter().copied().fold(f32::MIN, f32::max);
    let exp: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
    let total: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["cat", "dog", "fox"].map(String::from).to_vec()
    }

    #[test]
    fn shapes_and_label_counts_are_checked() {
        assert_eq!(
            ClassifyHead::from_shape(&[1, 1000], None).unwrap().classes,
            1000
        );
        assert_eq!(
            ClassifyHead::from_shape(&[1, 3, 1, 1], Some(3))
                .unwrap()
                .classes,
            3
        );
        let err = ClassifyHead::from_shape(&[1, 3], Some(2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("3 classes") && err.contains("2 labels"),
            "{err}"
        );
        let err = ClassifyHead::from_shape(&[1, 84, 8400], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("[1, 84, 8400]"), "{err}");
    }

    #[test]
    fn logits_are_softmaxed_probabilities_are_not() {
        let p = probabilities(&[2.0, 1.0, 0.1]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((p[0] - 0.659).abs() < 1e-3, "{p:?}");
        assert_eq!(probabilities(&[0.2, 0.7, 0.1]), vec![0.2, 0.7, 0.1]);
    }

    #[test]
    fn top_k_with_labels_filter_and_threshold() {
        let head = ClassifyHead { classes: 3 };
        let all = [true; 3];
        let dets = head
            .decode(&[0.2, 0.7, 0.1], 2, 0.0, &labels(), &all, (640, 480))
            .unwrap();
        let got: Vec<_> = dets.iter().map(|d| (d.label.as_str(), d.score)).collect();
        assert_eq!(got, vec![("dog", 0.7), ("cat", 0.2)]);
        assert_eq!(dets[0].bbox, [0.0, 0.0, 640.0, 480.0]);
        let no_dog = head
            .decode(
                &[0.2, 0.7, 0.1],
                1,
                0.0,
                &labels(),
                &[true, false, true],
                (1, 1),
            )
            .unwrap();
        assert_eq!(no_dog[0].label, "cat");
        let sure = head
            .decode(&[0.2, 0.7, 0.1], 5, 0.5, &labels(), &all, (1, 1))
            .unwrap();
        assert_eq!(sure.len(), 1);
    }
}
