//! What makes a read worth saying: a score floor, a known spelling within a
//! few edits, a pattern it must match (a container code, a lot number).

use regex::Regex;

/// The filters of `[read]`, compiled.
#[derive(Debug, Clone)]
pub struct Filters {
    /// Reads below this mean character probability are dropped.
    pub min_score: f32,
    /// The whole read must match it (after a known correction).
    pub pattern: Option<Regex>,
    /// Spellings a read is corrected to when within `max_distance` edits.
    pub known: Vec<String>,
    /// Edits (insert, delete, substitute one character) a known spelling
    /// may be away.
    pub max_distance: usize,
}

/// A read that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// What is published.
    pub text: String,
    /// The model's spelling, when a known one replaced it.
    pub read_as: Option<String>,
}

impl Filters {
    /// The read as published, or `None` when it does not pass.
    pub fn accept(&self, text: &str, score: f32) -> Option<Accepted> {
        if text.is_empty() || score < self.min_score {
            return None;
        }
        let known = self
            .known
            .iter()
            .map(|k| (strsim::levenshtein(k, text), k))
            .filter(|(d, _)| *d <= self.max_distance)
            .min_by_key(|(d, _)| *d);
        let accepted = match known {
            Some((0, _)) | None => Accepted {
                text: text.to_string(),
                read_as: None,
            },
            Some((_, k)) => Accepted {
                text: k.clone(),
                read_as: Some(text.to_string()),
            },
        };
        match &self.pattern {
            Some(p) if !p.is_match(&accepted.text) => None,
            _ => Some(accepted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filters(pattern: Option<&str>, known: &[&str]) -> Filters {
        Filters {
            min_score: 0.5,
            pattern: pattern.map(|p| Regex::new(p).unwrap()),
            known: known.iter().map(|k| k.to_string()).collect(),
            max_distance: 1,
        }
    }

    #[test]
    fn a_known_spelling_one_edit_away_replaces_the_read_and_says_so() {
        let f = filters(None, &["MSCU1234565", "TGHU9876543"]);
        let got = f.accept("MSCU1Z34565", 0.9).unwrap();
        assert_eq!(got.text, "MSCU1234565");
        assert_eq!(got.read_as.as_deref(), Some("MSCU1Z34565"));
        // Exact: no `read_as`. Two edits away: the read stays as it is.
        assert_eq!(f.accept("TGHU9876543", 0.9).unwrap().read_as, None);
        assert_eq!(f.accept("TGHU98765XX", 0.9).unwrap().text, "TGHU98765XX");
    }

    #[test]
    fn a_read_that_misses_the_pattern_or_the_score_is_not_said() {
        let container = filters(Some(r"^[A-Z]{4}\d{7}$"), &[]);
        assert!(container.accept("MSCU1234565", 0.9).is_some());
        assert!(container.accept("MSCU12345", 0.9).is_none());
        assert!(container.accept("MSCU1234565", 0.4).is_none());
        assert!(container.accept("", 1.0).is_none());
        // A correction happens first, so the pattern sees the known spelling.
        let both = filters(Some(r"^[A-Z]{4}\d{7}$"), &["MSCU1234565"]);
        assert_eq!(both.accept("MSCU12345G5", 0.9).unwrap().text, "MSCU1234565");
    }
}
