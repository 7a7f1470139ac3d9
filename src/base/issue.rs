//! One vocabulary for "the operator's configuration is wrong": every
//! section's `validate()` returns [`Issue`]s, start-up checks that only the
//! loaded model or the outbox can make return an [`Issue`] as their error,
//! and `cli::exit_code` looks for that one type to choose exit status 2.

use std::fmt;
use std::path::PathBuf;

/// One problem with a configuration: the key to change and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Issue {
    /// Dotted key, e.g. `model.path` or `source[0].path`; empty for syntax errors.
    pub key: String,
    /// Line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub reason: String,
}

impl Issue {
    /// A problem with `key` (relative to whatever section reports it).
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Issue {
            key: key.into(),
            line: None,
            reason: reason.into(),
        }
    }

    /// The same problem seen from the enclosing table: `listen` within
    /// `telemetry` is `telemetry.listen`.
    pub fn within(mut self, table: &str) -> Self {
        self.key = if self.key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{}", self.key)
        };
        self
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.reason)
        } else {
            write!(f, "key `{}`: {}", self.key, self.reason)
        }
    }
}

/// A configuration file that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// At least one problem.
    pub issues: Vec<Issue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.issues.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "config error: {}", self.file.display())?;
            if let Some(line) = issue.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": {issue}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issue_is_named_from_its_table_and_printed_as_the_operator_reads_it() {
        let issue = Issue::new("listen", "is not an address").within("telemetry");
        assert_eq!(issue.key, "telemetry.listen");
        let nested = Issue::new("path", "is missing").within("source[2]");
        assert_eq!(nested.key, "source[2].path");
        let e = ConfigError {
            file: PathBuf::from("/etc/edgewatch.toml"),
            issues: vec![
                Issue {
                    line: Some(7),
                    ..issue
                },
                Issue::new("", "expected `=`"),
            ],
        };
        assert_eq!(
            e.to_string(),
            "config error: /etc/edgewatch.toml:7: key `telemetry.listen`: is not an address\n\
             config error: /etc/edgewatch.toml: expected `=`"
        );
    }
}
