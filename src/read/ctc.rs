//! CTC greedy decoding for PP-OCR-style recognizers: the best class per
//! time step, repeats merged, blanks dropped. The score is the mean of the
//! kept characters' probabilities, as PaddleOCR's `CTCLabelDecode` says it.

use std::path::Path;

/// The characters a recognizer's classes stand for: class 0 is CTC's blank,
/// then the dictionary in order, then (PP-OCR's `use_space_char`) a space.
#[derive(Debug, Clone)]
pub struct Dictionary {
    chars: Vec<String>,
}

/// Why a dictionary does not fit its model.
#[derive(Debug, thiserror::Error)]
pub enum DictionaryError {
    /// No `character` metadata in the model and no keys file given.
    #[error("the model has no `character` metadata; give the dictionary as read.keys_file (one character per line, e.g. PaddleOCR's ppocr_keys_v1.txt)")]
    Missing,
    /// The keys file cannot be read.
    #[error("cannot read keys_file {path} ({reason}); give one character per line")]
    Unreadable {
        /// The keys file.
        path: String,
        /// What the OS said.
        reason: String,
    },
    /// The model scores a different number of classes.
    #[error("the model scores {classes} classes but the dictionary has {chars} characters (+ blank + space = {expected}); is read.keys_file the one this model was trained with?")]
    Count {
        /// Classes in the model's output.
        classes: usize,
        /// Characters in the dictionary.
        chars: usize,
        /// What the model should score with this dictionary.
        expected: usize,
    },
}

impl Dictionary {
    /// One character per line, as the ONNX metadata `character` and
    /// PaddleOCR's keys files hold them.
    pub fn from_lines(text: &str) -> Dictionary {
        let chars = text
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .filter(|l| !l.is_empty())
            .collect();
        Dictionary { chars }
    }

    /// The keys file at `path`.
    pub fn from_file(path: &Path) -> Result<Dictionary, DictionaryError> {
        std::fs::read_to_string(path)
            .map(|t| Dictionary::from_lines(&t))
            .map_err(|e| DictionaryError::Unreadable {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Characters, without blank and space.
    pub fn len(&self) -> usize {
        self.chars.len()
    }

    /// Whether it has no characters.
    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// Checks the model's class count: blank + characters (+ space).
    pub fn fit(&mut self, classes: usize) -> Result<(), DictionaryError> {
        let n = self.chars.len();
        if classes == n + 2 {
            self.chars.push(" ".to_string());
            Ok(())
        } else if classes == n + 1 {
            Ok(())
        } else {
            Err(DictionaryError::Count {
                classes,
                chars: n,
                expected: n + 2,
            })
        }
    }

    /// The text of class `c` (1-based: 0 is blank).
    fn char(&self, c: usize) -> &str {
        self.chars.get(c - 1).map(String::as_str).unwrap_or("")
    }
}

/// One decoded line.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// Mean probability of the chosen characters (0 for an empty read).
    pub score: f32,
}

/// Greedy CTC over one sequence of `steps` rows of `classes` probabilities.
pub fn decode(probs: &[f32], classes: usize, dict: &Dictionary) -> Decoded {
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0usize);
    let mut prev = usize::MAX;
    for row in probs.chunks_exact(classes) {
        let (best, p) =
            row.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        if best != 0 && best != prev {
            text.push_str(dict.char(best));
            sum += p;
            n += 1;
        }
        prev = best;
    }
    Decoded {
        text,
        score: if n == 0 { 0.0 } else { sum / n as f32 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(classes: usize, hot: usize, p: f32) -> Vec<f32> {
        let mut r = vec![(1.0 - p) / (classes - 1) as f32; classes];
        r[hot] = p;
        r
    }

    #[test]
    fn repeats_merge_blanks_split_and_the_score_is_the_mean_of_kept_characters() {
        let mut dict = Dictionary::from_lines("A\nB\nC\n");
        dict.fit(5).unwrap(); // blank, A, B, C, space
                              // A A blank A B space C blank  ->  "AA B C"? No: "A" "A"(after blank) "B" " " "C"
        let seq = [
            (1, 0.9),
            (1, 0.7),
            (0, 0.99),
            (1, 0.8),
            (2, 0.6),
            (4, 0.5),
            (3, 1.0),
            (0, 0.9),
        ];
        let probs: Vec<f32> = seq.iter().flat_map(|&(c, p)| row(5, c, p)).collect();
        let d = decode(&probs, 5, &dict);
        assert_eq!(d.text, "AAB C");
        let want = (0.9 + 0.8 + 0.6 + 0.5 + 1.0) / 5.0;
        assert!((d.score - want).abs() < 1e-6, "{}", d.score);
        let blank: Vec<f32> = (0..4).flat_map(|_| row(5, 0, 0.9)).collect();
        assert_eq!(
            decode(&blank, 5, &dict),
            Decoded {
                text: String::new(),
                score: 0.0
            }
        );
    }

    #[test]
    fn a_dictionary_must_fit_the_model_with_or_without_the_space() {
        let mut with_space = Dictionary::from_lines("a\r\nb\r\n");
        assert!(with_space.fit(4).is_ok());
        assert_eq!(with_space.char(3), " ");
        let mut without = Dictionary::from_lines("a\nb");
        assert!(without.fit(3).is_ok());
        let err = Dictionary::from_lines("a\nb").fit(6625).unwrap_err();
        assert!(err.to_string().contains("6625 classes"), "{err}");
        assert!(err.to_string().contains("2 characters"), "{err}");
    }
}
