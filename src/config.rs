//! Loads the TOML configuration and composes the section structs, which live
//! beside the components they configure. Every error names the file, the key
//! and what to do.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::base::restart::SuperviseConfig;
use crate::infer::budget::{MemoryPlan, PlanError, PlanInput};
use crate::infer::tiling::TilingConfig;
use crate::infer::ModelConfig;
use crate::postprocess::DecodeConfig;
use crate::sink::mqtt::MqttConfig;
use crate::source::SourceConfig;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// MQTT client id and topic segment.
    #[serde(default = "default_device")]
    pub device: String,
    /// The one memory number an operator sets; `budget.rs` plans it.
    #[serde(default = "default_budget")]
    pub memory_budget_mb: u64,
    /// Largest frame decoded at full size; derived from the budget when unset.
    #[serde(default)]
    pub max_pixels: Option<u64>,
    /// Most pixels a file may declare per byte it has. Real images stay far
    /// below (a flat JPEG or 1-bit PNG: hundreds to a few thousand); a tiny
    /// file declaring a huge size is a decompression bomb that would tie up a
    /// worker for seconds, and goes to `failed/` instead.
    #[serde(default = "default_pixels_per_byte")]
    pub max_pixels_per_byte: u64,
    /// The model to run.
    pub model: ModelConfig,
    /// Tiled inference.
    #[serde(default)]
    pub tiling: TilingConfig,
    /// Post-processing thresholds for the model family.
    #[serde(default)]
    pub decode: DecodeConfig,
    /// Where frames come from (`[[source]]` tables).
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    /// Where detections go.
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
    /// Hang detection for the watchdog.
    #[serde(default)]
    pub supervise: SuperviseConfig,
    /// Health and metrics endpoint.
    #[serde(default)]
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The TensorRT backend (`model.backend = "tensorrt"`).
    #[serde(default)]
    pub tensorrt: crate::infer::tensorrt::settings::TensorrtConfig,
    /// A second model on the boxes' crops: the text in each box.
    #[serde(default)]
    pub read: Option<crate::read::ReadConfig>,
    /// When the configured tile did not fit the budget and a smaller one
    /// was chosen: what was changed, for one INFO line at start-up.
    #[serde(skip)]
    pub plan_fitted: Option<String>,
}

/// Smallest tile (and whole-frame side) the plan shrinks to on its own: a
/// text line needs room around it, and the overlap must stay a minority.
const MIN_FITTED_TILE: u32 = 320;

fn default_pixels_per_byte() -> u64 {
    20_000
}

fn default_device() -> String {
    "edgewatch".to_string()
}

/// 320 MiB buys two workers on a two-core machine (measured peaks: about
/// 130 MiB for 1080p and under 256 MiB for 4K; see BENCHMARKS.md).
fn default_budget() -> u64 {
    320
}

/// What the configuration will be used for: `detect` needs only the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// One-shot detection on files given on the command line.
    Detect,
    /// The daemon: sources and MQTT are required.
    Run,
}

pub use crate::base::issue::{ConfigError, Issue};

impl Config {
    /// Reads, parses and validates `path` for `purpose`. Relative paths inside
    /// the file are resolved against the file's own directory, so a config
    /// works the same whatever directory the daemon is started from.
    pub fn load(path: &Path, purpose: Purpose) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            issues: vec![Issue {
                key: String::new(),
                line: None,
                reason: format!("cannot read the file ({e}); check the path and its permissions"),
            }],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Config::from_toml(&text, &base, purpose).map_err(|issues| ConfigError {
            file: path.to_path_buf(),
            issues,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path, purpose: Purpose) -> Result<Config, Vec<Issue>> {
        let mut config = parse(text)?;
        if purpose == Purpose::Run && config.mqtt.is_none() {
            config.mqtt = Some(MqttConfig::default());
        }
        config.resolve_paths(base);
        config.resolve_family_defaults();
        // Before the plan, which sizes the engine that will run.
        config.model.backend_choice = crate::infer::choice::resolve(&mut config.model);
        config.keep_auto_within_budget();
        config.fit_plan();
        let mut issues = config.validate(purpose);
        if issues.is_empty() {
            return Ok(config);
        }
        // Value checks know the key, not the place: the file tells it.
        let spans = crate::base::config_spans::Spans::new(text);
        for issue in issues.iter_mut().filter(|i| i.line.is_none()) {
            issue.line = spans.line(&issue.key);
        }
        Err(issues)
    }

    /// Defaults that depend on the model family.
    fn resolve_family_defaults(&mut self) {
        use crate::infer::tiling::TilingMode;
        use crate::infer::Family;
        if self.tiling.tile == 0 {
            self.tiling.tile = match self.model.family {
                // The model sees each tile at its own resolution.
                Family::Yolo => self.model.default_input().0,
                _ => 960,
            };
        }
        // A classifier labels the whole frame; tiles would each get a label.
        if self.model.family == Family::Classify {
            self.tiling.mode = TilingMode::Off;
        }
        self.tiling.resolve_scale(self.model.family == Family::Db);
    }

    /// `auto` chose ONNX Runtime, whose workers need more memory than
    /// tract's: when the budget holds tract's plan and not ONNX Runtime's
    /// (as configured, or else with the smaller tiles `fit_plan` would
    /// pick), tract runs, and the choice says why.
    fn keep_auto_within_budget(&mut self) {
        use crate::infer::Backend;
        if self.model.backend != Backend::Onnxruntime || self.model.backend_choice.is_none() {
            return;
        }
        let over =
            |c: &Config| matches!(c.memory_plan(), Err(ref e) if e.key == "memory_budget_mb");
        if !over(self) {
            return;
        }
        let mut tract = self.clone();
        tract.model.backend = Backend::Cpu;
        let use_tract = if over(&tract) {
            let mut ort = self.clone();
            ort.fit_plan();
            tract.fit_plan();
            over(&ort) && !over(&tract)
        } else {
            true
        };
        if use_tract {
            let why = self
                .memory_plan()
                .err()
                .map(|e| e.reason)
                .unwrap_or_default();
            self.model.backend = Backend::Cpu;
            self.model.backend_choice = Some(format!(
                "backend auto: tract-cpu, as ONNX Runtime was found but memory_budget_mb = {} cannot hold its worker ({}); raise memory_budget_mb to run it",
                self.memory_budget_mb,
                why.split(':').next().unwrap_or(&why).trim()
            ));
        }
    }

    /// The plan fits before it refuses: when not even one worker fits with
    /// the configured text tile (and whole-frame side), smaller ones are
    /// tried, 32 px at a time down to 320 px. Tiles see text at the same
    /// scale whatever their size, so what is found stays the same; a
    /// smaller whole-frame side makes `auto` tile more frames. Nothing is
    /// changed when the plan fits, or when nothing smaller fits either.
    fn fit_plan(&mut self) {
        use crate::infer::tiling::TilingMode;
        if self.model.family != crate::infer::Family::Db
            || self.tiling.mode == TilingMode::Off
            || self.memory_budget_mb == 0
            || self.max_pixels == Some(0)
            || !matches!(self.memory_plan(), Err(ref e) if e.key == "memory_budget_mb")
            || !self.tiling.validate().is_empty()
        {
            return;
        }
        let (tile, side) = (self.tiling.tile, self.model.max_side);
        let floor = MIN_FITTED_TILE.max((2 * self.tiling.overlap + 64).next_multiple_of(32));
        let mut trial = self.clone();
        while trial.tiling.tile > floor {
            trial.tiling.tile -= 32;
            if self.tiling.mode == TilingMode::Auto || self.tiling.full_frame {
                // The whole-frame pass shrinks with the tile, in step.
                trial.model.max_side = trial.model.max_side.saturating_sub(32).max(floor);
            }
            if trial.memory_plan().is_ok() {
                trial.plan_fitted = Some(format!(
                    "memory plan: tiling.tile {tile} and model.max_side {side} do not fit memory_budget_mb = {} with one worker; using tile {} and max_side {} (text is still seen at full resolution in tiles); set them, or raise memory_budget_mb, to choose yourself",
                    self.memory_budget_mb, trial.tiling.tile, trial.model.max_side
                ));
                *self = trial;
                return;
            }
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = normalize(&base.join(&*p));
            }
        };
        resolve(&mut self.model.path);
        resolve(&mut self.tensorrt.engines);
        if let Some(p) = self.tensorrt.reference_image.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.model.labels_file.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.model.onnxruntime_library.as_mut() {
            resolve(p);
        }
        if let Some(r) = self.read.as_mut() {
            resolve(&mut r.path);
            if let Some(k) = r.keys_file.as_mut() {
                resolve(k);
            }
        }
        if let Some(m) = self.mqtt.as_mut() {
            resolve(&mut m.outbox);
            for p in [
                &mut m.password_file,
                &mut m.ca_file,
                &mut m.client_cert,
                &mut m.client_key,
            ]
            .into_iter()
            .flatten()
            {
                resolve(p);
            }
        }
        for source in &mut self.sources {
            source.resolve_paths(&resolve);
        }
    }

    /// Every semantic problem, not just the first, so one `check-config`
    /// run tells the operator everything to fix.
    pub fn validate(&self, purpose: Purpose) -> Vec<Issue> {
        let mut issues = Vec::new();
        if let Err(reason) =
            crate::base::topic::check_segment(&self.device).map_err(|e| e.to_string())
        {
            issues.push(Issue::new("device", reason));
        }
        if self.memory_budget_mb == 0 {
            issues.push(Issue::new("memory_budget_mb", "must be greater than 0"));
        }
        let model_issues = self.model.validate();
        let tiling_issues = self.tiling.validate();
        let models_are_sane = model_issues.is_empty() && tiling_issues.is_empty();
        let within = |table: &'static str| move |issue: Issue| issue.within(table);
        issues.extend(model_issues.into_iter().map(within("model")));
        issues.extend(tiling_issues.into_iter().map(within("tiling")));
        if self.tiling.mode == crate::infer::tiling::TilingMode::Guided
            && self.model.family == crate::infer::Family::Yolo
        {
            issues.push(Issue::new(
                "tiling.mode",
                "guided reads a text model's probability map; a yolo model tiles: use \"auto\" or \"tiles\"",
            ));
        }
        if self.max_pixels_per_byte == 0 {
            issues.push(Issue::new(
                "max_pixels_per_byte",
                "must be greater than 0 (default 20000)",
            ));
        }
        if self.max_pixels == Some(0) {
            issues.push(Issue::new(
                "max_pixels",
                "must be greater than 0 (or left out to derive it from memory_budget_mb)",
            ));
        }
        // The plan needs sane inputs; its own problems come after theirs.
        if models_are_sane && self.memory_budget_mb > 0 && self.max_pixels != Some(0) {
            if let Err(e) = self.memory_plan() {
                issues.push(Issue::new(e.key, e.reason));
            }
        }
        issues.extend(self.tensorrt.validate().into_iter().map(within("tensorrt")));
        issues.extend(self.decode.validate().into_iter().map(within("decode")));
        issues.extend(
            self.supervise
                .validate()
                .into_iter()
                .map(within("supervise")),
        );
        issues.extend(
            self.telemetry
                .validate()
                .into_iter()
                .map(within("telemetry")),
        );
        if purpose == Purpose::Run && self.sources.is_empty() {
            issues.push(Issue::new(
                "source",
                "no [[source]] is configured; add one, e.g. [[source]] name = \"inbox\" kind = \"folder\" path = \"/var/lib/edgewatch/inbox\"",
            ));
        }
        // A missing [mqtt] is the defaults, as an empty header is (`from_toml`
        // fills it in for the daemon); one that is there is checked for
        // every purpose, so `check-config --detect` never checks less.
        if let Some(m) = &self.mqtt {
            issues.extend(m.validate().into_iter().map(within("mqtt")));
        }
        if let Some(r) = &self.read {
            issues.extend(r.validate().into_iter().map(within("read")));
        }
        issues.extend(crate::source::validate_sources(&self.sources));
        issues
    }
}

impl Config {
    /// Splits `memory_budget_mb` into workers, frame size and pools.
    pub fn memory_plan(&self) -> Result<MemoryPlan, PlanError> {
        let model_bytes = std::fs::metadata(&self.model.path)
            .map(|m| m.len())
            .unwrap_or(0);
        // One engine on one GPU: more workers would only hold more copies.
        let mut model = self.model.clone();
        let accelerator = match model.backend {
            crate::infer::Backend::Tensorrt => {
                model.workers = Some(model.workers.unwrap_or(1));
                Some(crate::infer::budget::tensorrt_item(
                    &self.tensorrt,
                    self.memory_budget_mb,
                    model_bytes,
                    self.model.max_side,
                    self.tiling.batch,
                ))
            }
            crate::infer::Backend::Onnxruntime => Some(crate::infer::budget::onnxruntime_item()),
            crate::infer::Backend::Cpu | crate::infer::Backend::Auto => None,
        };
        crate::infer::budget::plan(&PlanInput {
            budget_mb: self.memory_budget_mb,
            model: &model,
            model_bytes,
            tiling: &self.tiling,
            max_pixels: self.max_pixels,
            sources: self.sources.len(),
            stream_bytes: self
                .sources
                .iter()
                .map(|s| s.stream_bytes(&self.tiling))
                .sum(),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            accelerator,
            second_stage: self.read.as_ref().map(|r| {
                let bytes = std::fs::metadata(&r.path).map_or(0, |m| m.len());
                crate::infer::budget::Item {
                    name: "read".into(),
                    bytes: r.planned_bytes(bytes),
                    detail: format!(
                        "{:.1} MiB recognizer, batches of {} crops up to {} px wide",
                        bytes as f64 / (1 << 20) as f64,
                        r.batch,
                        r.max_width
                    ),
                }
            }),
        })
    }
}

/// Removes `.` and `name/..` pairs without touching the file system, so
/// logs show `run/inbox`, not `deploy/../run/inbox`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        out
    }
}

fn parse(text: &str) -> Result<Config, Vec<Issue>> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| vec![toml_issue(text, String::new(), &e)])?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let mut issue = toml_issue(text, key, e.inner());
        if let Some(hint) = source_keys_hint(text, &issue) {
            issue.reason.push_str(&hint);
        }
        within_source(text, &mut issue);
        // serde stops at the first problem; a wrong source kind elsewhere
        // in the file is cheap to see, and worth saying in the same run.
        let others: Vec<Issue> = unknown_source_kinds(text)
            .into_iter()
            .filter(|k| !issue.key.starts_with(&k.key) && !k.key.starts_with(&issue.key))
            .collect();
        std::iter::once(issue).chain(others).collect()
    })
}

/// Every `[[source]]` whose `kind` is not one edgewatch has.
fn unknown_source_kinds(text: &str) -> Vec<Issue> {
    const KINDS: [&str; 4] = ["folder", "camera", "replay", "rtsp"];
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return Vec::new();
    };
    let spans = crate::base::config_spans::Spans::new(text);
    let sources = table.get("source").and_then(|s| s.as_array());
    sources
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            let kind = s.get("kind")?.as_str()?;
            (!KINDS.contains(&kind)).then(|| {
                let key = format!("source[{i}].kind");
                Issue {
                    line: spans.line(&key),
                    key,
                    reason: format!(
                        "unknown source kind {kind:?}; use one of {}",
                        KINDS.join(", ")
                    ),
                }
            })
        })
        .collect()
}

/// serde names an unknown key inside a source's sub-table (`[source.events]`)
/// only by its source, at the `[[source]]` header: the file gives its full
/// key and line.
fn within_source(text: &str, issue: &mut Issue) {
    let Some(name) = issue
        .reason
        .strip_prefix("unknown field `")
        .and_then(|r| r.split('`').next())
    else {
        return;
    };
    if !issue.key.starts_with("source[") || issue.key.contains('.') {
        return;
    }
    let spans = crate::base::config_spans::Spans::new(text);
    if let Some((key, line)) = spans.find_within(&issue.key, name) {
        issue.key = key;
        issue.line = Some(line);
    }
}

/// Where to find the keys a stream source takes, for an unknown one: the
/// stream keys are flattened into each kind's table, and serde then names
/// the stray key without listing the known ones.
fn source_keys_hint(text: &str, issue: &Issue) -> Option<String> {
    if !issue.reason.starts_with("unknown field") || issue.reason.contains("expected") {
        return None;
    }
    let index: usize = issue
        .key
        .strip_prefix("source[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    let table: toml::Table = toml::from_str(text).ok()?;
    let kind = table
        .get("source")?
        .as_array()?
        .get(index)?
        .get("kind")?
        .as_str()?
        .to_string();
    Some(format!(
        "; a {kind} source takes the keys listed for kind = \"{kind}\" and for every stream in docs/configuration.md"
    ))
}

fn toml_issue(text: &str, key: String, e: &toml::de::Error) -> Issue {
    let line = e
        .span()
        .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
    Issue {
        key,
        line,
        reason: e.message().trim().replace('\n', " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const MINIMAL: &str = r#"
        [model]
        path = "m.onnx"
    "#;

    #[cfg(not(feature = "tensorrt"))]
    #[test]
    fn auto_runs_onnxruntime_where_the_budget_holds_it_and_tract_where_only_tract_fits() {
        use crate::infer::Backend;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), vec![0u8; 4 << 20]).unwrap();
        std::fs::create_dir(dir.path().join("onnxruntime")).unwrap();
        std::fs::write(dir.path().join("onnxruntime/libonnxruntime.so"), b"x").unwrap();
        let with = |mb: u32| {
            let text = format!("memory_budget_mb = {mb}\n[model]\npath = \"m.onnx\"\n");
            Config::from_toml(&text, dir.path(), Purpose::Detect).unwrap()
        };
        let roomy = with(1024);
        assert_eq!(roomy.model.backend, Backend::Onnxruntime);
        assert!(roomy
            .model
            .backend_choice
            .unwrap()
            .starts_with("backend auto: onnxruntime-cpu"));
        let tight = with(200);
        assert_eq!(tight.model.backend, Backend::Cpu);
        let why = tight.model.backend_choice.clone().unwrap();
        assert!(
            why.contains("memory_budget_mb = 200 cannot hold its worker"),
            "{why}"
        );
        assert!(tight.memory_plan().is_ok());
    }

    /// `docs/configuration.md`'s table, a row each: its keys as (section,
    /// key), and its default cell.
    fn documented() -> Vec<(Vec<(String, String)>, String)> {
        let doc = include_str!("../docs/configuration.md");
        let mut rows = Vec::new();
        for line in doc.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.split(" | ").collect();
            let (key_cell, default) = (cells[0].trim_start_matches("| "), cells[1]);
            // `[model] mean`, `std`: later keys share the first one's section.
            let mut section = String::new();
            let mut keys = Vec::new();
            for token in key_cell.split('`').skip(1).step_by(2) {
                let key = match token.rsplit_once(' ') {
                    Some((sec, key)) => {
                        section = sec.trim_matches(|c| c == '[' || c == ']').to_string();
                        key
                    }
                    None => token,
                };
                keys.push((section.clone(), key.to_string()));
            }
            rows.push((keys, default.to_string()));
        }
        rows
    }

    /// The leaves of a serialised default config: (section, key) → value;
    /// `source` merges the three kinds.
    fn defaults() -> BTreeMap<(String, String), serde_json::Value> {
        let cfg = parse(
            r#"
            [model]
            path = "m.onnx"
            [[source]]
            name = "f"
            kind = "folder"
            path = "in"
            [[source]]
            name = "c"
            kind = "camera"
            device = "/dev/video0"
            [[source]]
            name = "r"
            kind = "replay"
            path = "r.replay"
            [[source]]
            name = "ip"
            kind = "rtsp"
            url = "rtsp://cam.local:554/stream1"
            [mqtt]
            [read]
            path = "rec.onnx"
        "#,
        )
        .unwrap();
        let json = serde_json::to_value(&cfg).unwrap();
        let mut out = BTreeMap::new();
        for (k, v) in json.as_object().unwrap() {
            match v {
                serde_json::Value::Object(section) => {
                    for (k2, v2) in section {
                        out.insert((k.clone(), k2.clone()), v2.clone());
                    }
                }
                serde_json::Value::Array(sources) if k == "sources" || k == "source" => {
                    for src in sources {
                        for (k2, v2) in src.as_object().unwrap() {
                            out.insert(("source".to_string(), k2.clone()), v2.clone());
                        }
                    }
                }
                _ => {
                    out.insert((String::new(), k.clone()), v.clone());
                }
            }
        }
        out
    }

    #[test]
    fn the_documented_defaults_are_the_code_s_and_every_key_is_documented() {
        let rows = documented();
        let code = defaults();
        let mut checked = 0;
        for (keys, default) in &rows {
            // Only cells that are nothing but literals, one per key of the
            // row: `320`, `"auto"`, `1920`, `1080`.
            let literals: Vec<&str> = default.split('`').skip(1).step_by(2).collect();
            let only_literals = default
                .split('`')
                .step_by(2)
                .all(|between| matches!(between.trim(), "" | ","));
            for (n, (section, key)) in keys.iter().enumerate() {
                let value = code.get(&(section.clone(), key.clone())).unwrap_or_else(|| {
                    panic!("docs/configuration.md documents [{section}] {key}, which the code does not have")
                });
                let Some(literal) = literals.get(n).filter(|_| only_literals) else {
                    continue;
                };
                let parsed: toml::Table = toml::from_str(&format!("v = {literal}"))
                    .unwrap_or_else(|e| panic!("[{section}] {key}: {literal} is not TOML: {e}"));
                let want = serde_json::to_value(&parsed["v"]).unwrap();
                let same = match (want.as_f64(), value.as_f64()) {
                    // f32 fields: 0.3 comes back as 0.30000001.
                    (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                    _ => &want == value,
                };
                assert!(
                    same,
                    "docs/configuration.md says [{section}] {key} defaults to {literal}; the code says {value}"
                );
                checked += 1;
            }
        }
        assert!(checked >= 45, "only {checked} defaults were checked");
        for (section, key) in code.keys() {
            assert!(
                rows.iter()
                    .any(|(keys, _)| keys.contains(&(section.clone(), key.clone()))),
                "[{section}] {key} is not in docs/configuration.md"
            );
        }
    }

    #[test]
    fn the_readme_configuration_parses() {
        let readme = include_str!("../README.md");
        let block = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block in the README");
        let cfg = parse(block).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(cfg.sources.len(), 1);
        assert!(cfg.mqtt.is_some());
    }

    fn model_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"x").unwrap();
        dir
    }

    fn issues(text: &str, purpose: Purpose) -> Vec<Issue> {
        let dir = model_dir();
        Config::from_toml(text, dir.path(), purpose).expect_err("config should be rejected")
    }

    #[test]
    fn detect_needs_only_the_model_and_fills_defaults() {
        let dir = model_dir();
        let c = Config::from_toml(MINIMAL, dir.path(), Purpose::Detect).unwrap();
        assert_eq!(c.device, "edgewatch");
        assert_eq!(c.memory_budget_mb, 320);
        assert_eq!(c.model.path, dir.path().join("m.onnx"));
        assert_eq!(c.model.max_side, 960);
        assert!(c.model.labels.is_empty());
        assert_eq!(c.tiling.tile, 960);
        assert!((c.decode.threshold - 0.3).abs() < 1e-6);
        assert!((c.decode.box_threshold - 0.5).abs() < 1e-6);
        assert!((c.decode.unclip_ratio - 1.6).abs() < 1e-6);
        assert!(c.sources.is_empty());
        assert!(c.mqtt.is_none());
    }

    #[test]
    fn text_in_auto_is_scaled_for_min_text_px_unless_the_file_says() {
        let dir = model_dir();
        let load = |extra: &str| {
            Config::from_toml(&format!("{MINIMAL}{extra}"), dir.path(), Purpose::Detect).unwrap()
        };
        // 7 / 10: 10 px text reaches the model 7 px tall.
        assert!((load("").tiling.scale - 0.7).abs() < 1e-6);
        assert!((load("[tiling]\nmin_text_px = 14\n").tiling.scale - 0.5).abs() < 1e-6);
        // Never enlarged by default; a given scale is kept as given.
        assert_eq!(load("[tiling]\nmin_text_px = 5\n").tiling.scale, 1.0);
        assert_eq!(load("[tiling]\nscale = 1.0\n").tiling.scale, 1.0);
        assert_eq!(load("[tiling]\nscale = 2.0\n").tiling.scale, 2.0);
        // Other modes keep the frame's own resolution.
        assert_eq!(load("[tiling]\nmode = \"guided\"\n").tiling.scale, 1.0);
        assert_eq!(load("[tiling]\nmode = \"tiles\"\n").tiling.scale, 1.0);
        // A bad given scale is still refused, naming the key.
        let issues = Config::from_toml(
            &format!("{MINIMAL}[tiling]\nscale = 9.0\n"),
            dir.path(),
            Purpose::Detect,
        )
        .unwrap_err();
        assert_eq!(issues[0].key, "tiling.scale");
    }

    #[test]
    fn run_requires_sources_but_not_an_mqtt_section() {
        let found = issues(MINIMAL, Purpose::Run);
        let keys: Vec<_> = found.iter().map(|i| i.key.as_str()).collect();
        // Every [mqtt] key has a default: a missing section is an empty one.
        assert_eq!(keys, vec!["source"]);
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let found = issues(
            "[model]\npath = \"m.onnx\"\nfamly = \"db\"\n",
            Purpose::Detect,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].line, Some(3));
        assert!(found[0].reason.contains("famly"), "{:?}", found[0]);
    }

    #[test]
    fn an_unknown_stream_key_is_named_with_where_the_keys_are() {
        for (kind, own) in [
            ("camera", "device = \"/dev/video0\""),
            ("replay", "path = \"a.ewraw\""),
            ("rtsp", "url = \"rtsp://cam/live\""),
        ] {
            let found = issues(
                &format!(
                    "[model]\npath = \"m.onnx\"\n[[source]]\nname = \"c\"\nkind = \"{kind}\"\n{own}\nmotoin = true\n"
                ),
                Purpose::Detect,
            );
            assert_eq!(found.len(), 1, "{found:?}");
            // The full key and its line, not the `[[source]]` header.
            assert_eq!(found[0].key, "source[0].motoin");
            assert_eq!(found[0].line, Some(7));
            let reason = &found[0].reason;
            assert!(reason.contains("`motoin`"), "{reason}");
            assert!(
                reason.contains(&format!("kind = \"{kind}\""))
                    && reason.contains("docs/configuration.md"),
                "{reason}"
            );
        }
    }

    #[test]
    fn wrong_type_names_the_dotted_key() {
        let found = issues(
            "[model]\npath = \"m.onnx\"\n[decode]\nthreshold = \"high\"\n",
            Purpose::Detect,
        );
        assert_eq!(found[0].key, "decode.threshold");
        assert_eq!(found[0].line, Some(4));
    }

    #[test]
    fn guided_tiling_is_for_text_models_and_min_text_px_is_checked() {
        let found = issues(
            "[model]\npath = \"m.onnx\"\nfamily = \"yolo\"\n[tiling]\nmode = \"guided\"\n",
            Purpose::Detect,
        );
        assert!(found.iter().any(|i| i.key == "tiling.mode"), "{found:?}");
        let found = issues(
            "[model]\npath = \"m.onnx\"\n[tiling]\nmode = \"guided\"\nmin_text_px = 0.5\n",
            Purpose::Detect,
        );
        assert!(
            found.iter().any(|i| i.key == "tiling.min_text_px"),
            "{found:?}"
        );
        assert!(!found.iter().any(|i| i.key == "tiling.mode"), "{found:?}");
    }

    #[test]
    fn unsupported_family_and_backend_are_explained() {
        let found = issues(
            "[model]\npath = \"m.onnx\"\nfamily = \"segment\"\n",
            Purpose::Detect,
        );
        assert_eq!(found[0].key, "model.family");
        assert!(found[0].reason.contains("segment"));
        let found = issues(
            "[model]\npath = \"m.onnx\"\nbackend = \"tensorrt\"\n",
            Purpose::Detect,
        );
        assert_eq!(found[0].key, "model.backend");
        assert!(found[0].reason.contains("tensorrt"), "{:?}", found[0]);
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let text = r#"
            device = "line/3"
            [model]
            path = "missing.onnx"
            max_side = 100
            [decode]
            threshold = 1.5
            unclip_ratio = 0
            [[source]]
            name = "a+b"
            kind = "folder"
            path = "in"
            [mqtt]
            url = "http://broker"
        "#;
        let found = issues(text, Purpose::Run);
        let keys: Vec<_> = found.iter().map(|i| i.key.as_str()).collect();
        for key in [
            "device",
            "model.path",
            "model.max_side",
            "decode.threshold",
            "decode.unclip_ratio",
            "mqtt.url",
            "source[0].name",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
    }

    #[test]
    fn display_is_one_line_per_issue_with_file_and_key() {
        let err = ConfigError {
            file: PathBuf::from("/etc/edgewatch.toml"),
            issues: vec![Issue {
                key: "model.path".into(),
                line: Some(3),
                reason: "not found".into(),
            }],
        };
        assert_eq!(
            err.to_string(),
            "config error: /etc/edgewatch.toml:3: key `model.path`: not found"
        );
    }

    #[test]
    fn relative_paths_are_resolved_against_the_config_dir_and_tidied() {
        assert_eq!(
            normalize(Path::new("deploy/../run/./inbox")),
            PathBuf::from("run/inbox")
        );
        assert_eq!(
            normalize(Path::new("/etc/edgewatch/../x")),
            PathBuf::from("/etc/x")
        );
        assert_eq!(normalize(Path::new("../a")), PathBuf::from("../a"));
        assert_eq!(normalize(Path::new("a/..")), PathBuf::from("."));
    }

    #[test]
    fn unreadable_file_is_a_config_error() {
        let err =
            Config::load(Path::new("/nonexistent/edgewatch.toml"), Purpose::Detect).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/edgewatch.toml"));
        assert!(err.to_string().contains("cannot read"));
    }

    /// RapidOCR 3.10's PP-OCRv6 small detector (9.9 MB) on ONNX Runtime
    /// did not fit the default budget with a 960 px tile (it fits now that
    /// ONNX Runtime's plan counts one tract shape, not four); a model of
    /// 20 MB does not: the plan takes a smaller tile and says so, and
    /// refuses only when nothing fits.
    #[test]
    fn a_tile_that_does_not_fit_is_made_smaller_before_the_plan_refuses() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), vec![0u8; 20_000_000]).unwrap();
        let text = "[model]\npath = \"m.onnx\"\nbackend = \"onnxruntime\"\n";
        let mut unfitted = parse(text).unwrap();
        unfitted.resolve_paths(dir.path());
        unfitted.resolve_family_defaults();
        let e = unfitted
            .memory_plan()
            .expect_err("960 px tiles do not fit 320 MiB");
        assert_eq!(e.key, "memory_budget_mb");
        let c = Config::from_toml(text, dir.path(), Purpose::Detect).unwrap();
        assert!(
            c.tiling.tile < 960 && c.tiling.tile >= MIN_FITTED_TILE,
            "{}",
            c.tiling.tile
        );
        assert!(c.memory_plan().is_ok());
        let note = c.plan_fitted.as_deref().expect("the change is said");
        assert!(
            note.contains(&format!("using tile {}", c.tiling.tile)),
            "{note}"
        );
        // The largest tile that fits: one step larger does not.
        let mut larger = c.clone();
        larger.tiling.tile += 32;
        larger.model.max_side += 32;
        assert!(larger.memory_plan().is_err());
        // Nothing fits a tiny budget: refused as before, naming the budget.
        let found = issues(&format!("memory_budget_mb = 100\n{text}"), Purpose::Detect);
        assert!(
            found.iter().any(|i| i.key == "memory_budget_mb"),
            "{found:?}"
        );
        // A plan that fits (PP-OCRv4's size) is left alone.
        std::fs::write(dir.path().join("v4.onnx"), vec![0u8; 4_745_517]).unwrap();
        let fine = Config::from_toml(
            "[model]\npath = \"v4.onnx\"\nbackend = \"cpu\"\n",
            dir.path(),
            Purpose::Detect,
        )
        .unwrap();
        assert_eq!((fine.tiling.tile, fine.plan_fitted), (960, None));
    }

    /// A key typo and a wrong source kind in one file: both are said.
    #[test]
    fn a_typo_and_a_bad_source_kind_are_both_reported() {
        let found = issues(
            "[model]\npath = \"m.onnx\"\nfamly = \"db\"\n[[source]]\nname = \"a\"\nkind = \"foldr\"\npath = \"in\"\n",
            Purpose::Run,
        );
        let keys: Vec<(&str, Option<usize>)> =
            found.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert_eq!(
            keys,
            [("model.famly", Some(3)), ("source[0].kind", Some(6))],
            "{found:?}"
        );
        assert!(found[1].reason.contains("\"foldr\""), "{found:?}");
    }
}
