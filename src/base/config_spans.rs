//! Where a dotted key (`source[0].events.min_move`) sits in a TOML file:
//! its line, for errors found after parsing (value checks, a key serde
//! could only place at its `[[source]]` table).

use toml::de::{DeTable, DeValue};

/// A parsed file, kept to look keys up.
pub struct Spans<'i> {
    text: &'i str,
    root: Option<toml::Spanned<DeTable<'i>>>,
}

/// One step of a dotted key: a name, and an array index after it.
fn steps(key: &str) -> Vec<(&str, Option<usize>)> {
    key.split('.')
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse().ok()),
            None => (s, None),
        })
        .collect()
}

impl<'i> Spans<'i> {
    /// Parses `text`; a file that does not parse has no spans.
    pub fn new(text: &'i str) -> Spans<'i> {
        Spans {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    fn line_at(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line of the deepest part of `key` that the file has (the key
    /// itself when present, else its table).
    pub fn line(&self, key: &str) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table = root.get_ref();
        let mut found = None;
        for (name, index) in steps(key) {
            let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) else {
                break;
            };
            found = Some(k.span().start);
            let mut value = v;
            if let Some(i) = index {
                match value.get_ref() {
                    DeValue::Array(items) => match items.get(i) {
                        Some(item) => {
                            found = Some(item.span().start);
                            value = item;
                        }
                        None => break,
                    },
                    _ => break,
                }
            }
            match value.get_ref() {
                DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        found.map(|o| self.line_at(o))
    }

    /// Inside the table at `key`, the first nested key named `name`, as a
    /// full dotted key with its line: serde names an unknown key in a
    /// source's sub-table only by the source (`source[0]`).
    pub fn find_within(&self, key: &str, name: &str) -> Option<(String, usize)> {
        let root = self.root.as_ref()?;
        let mut table = root.get_ref();
        for (step, index) in steps(key) {
            let (_, v) = table.iter().find(|(k, _)| k.get_ref().as_ref() == step)?;
            let v = match index {
                Some(i) => match v.get_ref() {
                    DeValue::Array(items) => items.get(i)?,
                    _ => return None,
                },
                None => v,
            };
            match v.get_ref() {
                DeValue::Table(t) => table = t,
                _ => return None,
            }
        }
        let (path, offset) = search(table, name)?;
        Some((
            format!("{key}.{path}").trim_start_matches('.').to_string(),
            self.line_at(offset),
        ))
    }
}

/// Depth-first: the dotted path of `name` below `table`, and its offset.
fn search(table: &DeTable<'_>, name: &str) -> Option<(String, usize)> {
    if let Some((k, _)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == name) {
        return Some((name.to_string(), k.span().start));
    }
    for (k, v) in table.iter() {
        if let DeValue::Table(t) = v.get_ref() {
            if let Some((path, at)) = search(t, name) {
                return Some((format!("{}.{path}", k.get_ref()), at));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "memory_budget_mb = 0\n[model]\npath = \"m.onnx\"\n\n[[source]]\nname = \"a\"\n[[source]]\nname = \"b\"\n[source.events]\nmin_move = 3\n[decode]\nbox_threshold = 7\n";

    #[test]
    fn lines_of_keys_tables_and_array_items() {
        let s = Spans::new(TEXT);
        assert_eq!(s.line("memory_budget_mb"), Some(1));
        assert_eq!(s.line("model.path"), Some(3));
        assert_eq!(s.line("decode.box_threshold"), Some(12));
        assert_eq!(s.line("source[1].name"), Some(8));
        assert_eq!(s.line("source[1].events.min_move"), Some(10));
        // Not in the file: the nearest table that is.
        assert_eq!(s.line("decode.unclip_ratio"), Some(11));
        assert_eq!(s.line("mqtt.url"), None);
    }

    #[test]
    fn a_nested_key_is_found_below_its_source() {
        let s = Spans::new(TEXT);
        assert_eq!(
            s.find_within("source[1]", "min_move"),
            Some(("source[1].events.min_move".to_string(), 10))
        );
        assert_eq!(s.find_within("source[0]", "min_move"), None);
    }
}
