//! Class labels: from the config's `labels`, else a `labels_file`, else the
//! ONNX metadata where exporters put them: `names` (Ultralytics),
//! `character` (PaddleOCR/PaddleClas, one label per line), `labels`.

use std::path::Path;

/// Where a model's labels came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOrigin {
    /// `[model] labels`.
    Config,
    /// `[model] labels_file`.
    File,
    /// The ONNX metadata under this key (`names`, `character`, `labels`).
    Metadata(&'static str),
    /// None given: `class0`, `class1`, … (or `text` for DB models).
    Generated,
}

impl std::fmt::Display for LabelOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelOrigin::Config => f.write_str("model.labels"),
            LabelOrigin::File => f.write_str("model.labels_file"),
            LabelOrigin::Metadata(key) => write!(f, "the ONNX metadata `{key}`"),
            LabelOrigin::Generated => f.write_str("defaults (none given)"),
        }
    }
}

/// Reads labels out of one metadata value; `None` when it holds none.
type ParseLabels = fn(&str) -> Option<Vec<String>>;

/// The ONNX metadata keys exporters keep labels under, in the order they
/// are looked for, each with how its value is read.
const METADATA_KEYS: [(&str, ParseLabels); 3] = [
    ("names", parse_names),
    ("character", parse_lines),
    ("labels", parse_list_or_lines),
];

/// Labels that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// `labels_file` cannot be read.
    #[error("cannot read labels_file {} ({reason}); give one label per line, or list them in labels = [...]", path.display())]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
        /// What the system said.
        reason: std::io::Error,
    },
    /// `labels_file` holds no label.
    #[error("labels_file {} has no labels; give one per line", path.display())]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
    /// A class name that is not one of the model's labels.
    #[error("{name:?} is not a label of this model (labels: {shown})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The first labels, for the operator to pick from.
        shown: String,
    },
}

/// Labels in the order they are looked for. `metadata` looks up a raw ONNX
/// metadata value by key. Errors say which source was bad and how.
pub fn resolve(
    configured: &[String],
    file: Option<&Path>,
    metadata: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<(Vec<String>, LabelOrigin)>, LabelError> {
    if !configured.is_empty() {
        return Ok(Some((configured.to_vec(), LabelOrigin::Config)));
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|reason| LabelError::Unreadable {
            path: path.to_path_buf(),
            reason,
        })?;
        let labels: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if labels.is_empty() {
            return Err(LabelError::Empty {
                path: path.to_path_buf(),
            });
        }
        return Ok(Some((labels, LabelOrigin::File)));
    }
    for (key, parse) in METADATA_KEYS {
        if let Some(labels) = metadata(key).as_deref().and_then(parse) {
            return Ok(Some((labels, LabelOrigin::Metadata(key))));
        }
    }
    Ok(None)
}

/// No metadata: for callers that resolve only what the config gives.
pub fn no_metadata(_: &str) -> Option<String> {
    None
}

/// One label per line, as PaddleOCR and PaddleClas write `character`. A
/// label may be a space (OCR dictionaries have one), so only line ends are
/// trimmed; empty lines are skipped.
pub fn parse_lines(text: &str) -> Option<Vec<String>> {
    let labels: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    (!labels.is_empty()).then_some(labels)
}

/// A JSON list or dict literal (as `names`), else one label per line.
fn parse_list_or_lines(text: &str) -> Option<Vec<String>> {
    parse_names(text).or_else(|| parse_lines(text))
}

/// Which classes `[decode] classes` lets through: `allowed[c]` per label, all
/// when `classes` is empty. A name that is not a label is an error that lists
/// the labels.
pub fn allowed(classes: &[String], labels: &[String]) -> Result<Vec<bool>, LabelError> {
    if classes.is_empty() {
        return Ok(vec![true; labels.len()]);
    }
    let mut out = vec![false; labels.len()];
    for name in classes {
        match labels.iter().position(|l| l == name) {
            Some(i) => out[i] = true,
            None => {
                let shown: Vec<&str> = labels.iter().take(20).map(String::as_str).collect();
                return Err(LabelError::Unknown {
                    name: name.clone(),
                    shown: format!(
                        "{}{}",
                        shown.join(", "),
                        if labels.len() > 20 { ", …" } else { "" }
                    ),
                });
            }
        }
    }
    Ok(out)
}

/// Parses Ultralytics' `names` metadata: a Python dict literal such as
/// `{0: 'person', 1: "it's"}`, or a JSON list `["person", "car"]`. Ids must
/// run 0, 1, 2, … ; anything else is `None` (the caller falls back).
pub fn parse_names(text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    if let Ok(list) = serde_json::from_str::<Vec<String>>(text) {
        return (!list.is_empty()).then_some(list);
    }
    let inner = text.strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = inner.chars().peekable();
    let mut out = Vec::new();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut id = String::new();
        while let Some(c) = chars.peek().filter(|c| c.is_ascii_digit()) {
            id.push(*c);
            chars.next();
        }
        if id.parse::<usize>().ok()? != out.len() {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next()? != ':' {
            return None;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let quote = chars.next().filter(|q| *q == '\'' || *q == '"')?;
        let mut label = String::new();
        loop {
            match chars.next()? {
                '\\' => label.push(chars.next()?),
                c if c == quote => break,
                c => label.push(c),
            }
        }
        out.push(label);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ultralytics_names_parse() {
        assert_eq!(
            parse_names("{0: 'person', 1: \"it's\", 2: 'traffic light'}").unwrap(),
            vec!["person", "it's", "traffic light"]
        );
        assert_eq!(parse_names(r#"["a", "b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_names(r"{0: 'a\'b'}").unwrap(), vec!["a'b"]);
        // Gaps or unordered ids are not trusted.
        assert_eq!(parse_names("{1: 'a'}"), None);
        assert_eq!(parse_names("{0: 'a', 2: 'b'}"), None);
        assert_eq!(parse_names("{}"), None);
        assert_eq!(parse_names("person"), None);
    }

    #[test]
    fn config_beats_file_beats_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("l.names");
        std::fs::write(&file, "cat\n\n dog \n").unwrap();
        let meta = |k: &str| (k == "names").then(|| "{0: 'm'}".to_string());
        let (l, o) = resolve(&["x".into()], Some(&file), &meta).unwrap().unwrap();
        assert_eq!((l, o), (vec!["x".to_string()], LabelOrigin::Config));
        let (l, o) = resolve(&[], Some(&file), &meta).unwrap().unwrap();
        assert_eq!(
            (l, o),
            (vec!["cat".to_string(), "dog".into()], LabelOrigin::File)
        );
        let (l, o) = resolve(&[], None, &meta).unwrap().unwrap();
        assert_eq!(
            (l, o),
            (vec!["m".to_string()], LabelOrigin::Metadata("names"))
        );
        let junk = |k: &str| (k == "names").then(|| "junk".to_string());
        assert_eq!(resolve(&[], None, &junk).unwrap(), None);
        let err = resolve(&[], Some(&dir.path().join("missing")), &no_metadata)
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read labels_file"), "{err}");
    }

    #[test]
    fn metadata_keys_of_each_exporter() {
        let paddle = |k: &str| (k == "character").then(|| "red\r\n \n\nblue\n".to_string());
        let (l, o) = resolve(&[], None, &paddle).unwrap().unwrap();
        assert_eq!(l, ["red", " ", "blue"]);
        assert_eq!(o, LabelOrigin::Metadata("character"));
        assert_eq!(o.to_string(), "the ONNX metadata `character`");
        let both = |k: &str| match k {
            "names" => Some("{0: 'from-names'}".to_string()),
            "labels" => Some("[\"from-labels\"]".to_string()),
            _ => None,
        };
        assert_eq!(
            resolve(&[], None, &both).unwrap().unwrap().0,
            ["from-names"]
        );
        let labels = |k: &str| (k == "labels").then(|| "cat\ndog".to_string());
        let (l, o) = resolve(&[], None, &labels).unwrap().unwrap();
        assert_eq!(
            (l, o),
            (
                vec!["cat".to_string(), "dog".into()],
                LabelOrigin::Metadata("labels")
            )
        );
        let json = |k: &str| (k == "labels").then(|| "[\"a\", \"b\"]".to_string());
        assert_eq!(resolve(&[], None, &json).unwrap().unwrap().0, ["a", "b"]);
    }

    #[test]
    fn class_filter_names_labels() {
        let labels = ["red", "green", "blue"].map(String::from);
        assert_eq!(allowed(&[], &labels).unwrap(), vec![true; 3]);
        assert_eq!(
            allowed(&["blue".into()], &labels).unwrap(),
            vec![false, false, true]
        );
        let err = allowed(&["dog".into()], &labels).unwrap_err().to_string();
        assert!(
            err.contains("\"dog\"") && err.contains("red, green, blue"),
            "{err}"
        );
    }
}
