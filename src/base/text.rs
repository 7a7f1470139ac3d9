//! Text for people: reasons that fit on one log line.

/// `text` on one line: line breaks become `; `, so a reason never splits a
/// log line, a `detect` stderr line or an `.error.json` field.
pub fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}
