//! Frame sources. Each `[[source]]` table becomes one source.

pub mod folder;

use std::collections::HashSet;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::check_topic_segment;
use folder::FolderConfig;

/// One `[[source]]` table, told apart by `kind`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A watched folder.
    Folder(FolderConfig),
}

impl SourceConfig {
    /// Source name (topic segment).
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::Folder(f) => &f.name,
        }
    }

    pub(crate) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        match self {
            SourceConfig::Folder(f) => f.resolve_paths(resolve),
        }
    }
}

/// Problems across all sources as (dotted key, reason): names must be unique
/// topic segments and no two folders may share a directory.
pub fn validate_sources(sources: &[SourceConfig]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut dirs: Vec<(PathBuf, String)> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let key = |k: &str| format!("source[{i}].{k}");
        if let Err(reason) = check_topic_segment(source.name()) {
            out.push((key("name"), reason));
        } else if !names.insert(source.name().to_string()) {
            out.push((
                key("name"),
                format!(
                    "{:?} is used by another source; names must be unique",
                    source.name()
                ),
            ));
        }
        match source {
            SourceConfig::Folder(f) => {
                for (k, reason) in f.validate() {
                    out.push((key(k), reason));
                }
                let paths = f.paths();
                for (k, dir) in [
                    ("path", paths.inbox),
                    ("done", paths.done),
                    ("failed", paths.failed),
                ] {
                    if let Some((_, other)) = dirs.iter().find(|(d, _)| *d == dir) {
                        out.push((
                            key(k),
                            format!("{} is already used as {other}; give each folder its own directories", dir.display()),
                        ));
                    }
                    dirs.push((dir, key(k)));
                }
            }
        }
    }
    out
}
