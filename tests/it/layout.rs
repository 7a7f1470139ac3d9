//! The map cannot drift: CONTRIBUTING.md's layout names every folder of
//! `src/` and every file in it, names nothing that is gone, and `src/`
//! itself holds only `lib.rs`, `main.rs`, `config.rs` and folders; `lib.rs`
//! draws every top folder in its layers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Layout block's entries: a path at the start of a line, then its
/// text up to the next entry.
fn entries(contributing: &str) -> BTreeMap<String, String> {
    let start = contributing
        .find("## Layout")
        .expect("CONTRIBUTING.md has a ## Layout section");
    let block = &contributing[start..];
    let open = block.find("```\n").expect("the layout is a code block") + 4;
    let close = open + block[open..].find("```").expect("the code block ends");
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in block[open..close].lines() {
        if line.starts_with(' ') {
            if let Some(c) = &current {
                out.entry(c.clone()).and_modify(|t: &mut String| {
                    t.push(' ');
                    t.push_str(line.trim());
                });
            }
            continue;
        }
        let mut parts = line.splitn(2, char::is_whitespace);
        let path = parts.next().unwrap_or("").to_string();
        if path.is_empty() {
            continue;
        }
        out.insert(path.clone(), parts.next().unwrap_or("").trim().to_string());
        current = Some(path);
    }
    out
}

fn names_in(dir: &Path) -> (Vec<String>, Vec<String>) {
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().unwrap().is_dir() {
            dirs.push(name);
        } else {
            files.push(name);
        }
    }
    files.sort();
    dirs.sort();
    (files, dirs)
}

/// Problems with `map` against the tree under `src` (relative to `root`).
fn drift(root: &Path, map: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    let (root_files, _) = names_in(&root.join("src"));
    for f in &root_files {
        if !["lib.rs", "main.rs", "config.rs"].contains(&f.as_str()) {
            problems.push(format!(
                "src/{f}: src/ holds only lib.rs, main.rs, config.rs and folders; move it into one"
            ));
        }
        if !map.contains_key(&format!("src/{f}")) {
            problems.push(format!("src/{f} is not in CONTRIBUTING.md's layout"));
        }
    }
    let mut stack = vec![PathBuf::from("src")];
    while let Some(rel) = stack.pop() {
        let (files, dirs) = names_in(&root.join(&rel));
        for d in dirs {
            let sub = rel.join(&d);
            let key = format!("{}/", sub.display());
            match map.get(&key) {
                None => problems.push(format!("{key} is not in CONTRIBUTING.md's layout")),
                Some(text) => {
                    let (inner, _) = names_in(&root.join(&sub));
                    for f in inner.iter().filter(|f| f.as_str() != "mod.rs") {
                        let named = text
                            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                            .any(|w| w == f);
                        if !named {
                            problems.push(format!("{key}{f} is not named in its folder's entry"));
                        }
                    }
                    for w in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.')) {
                        let looks_like_file = [".rs", ".cpp", ".h"].iter().any(|x| w.ends_with(x));
                        if looks_like_file && !inner.iter().any(|f| f == w) {
                            problems.push(format!("{key} names {w}, which is not there"));
                        }
                    }
                }
            }
            stack.push(sub);
        }
        let _ = files;
    }
    for key in map.keys().filter(|k| k.starts_with("src/")) {
        if !root.join(key).exists() {
            problems.push(format!("{key} is in the layout but not in the tree"));
        }
    }
    problems
}

#[test]
fn contributing_names_every_folder_and_file_of_src_and_nothing_that_is_gone() {
    let text = std::fs::read_to_string(root().join("CONTRIBUTING.md")).unwrap();
    let problems = drift(&root(), &entries(&text));
    assert!(
        problems.is_empty(),
        "the map has drifted:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layout_check_finds_a_new_file_a_new_folder_and_a_stale_name() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(src.join("base")).unwrap();
    std::fs::write(src.join("lib.rs"), "").unwrap();
    std::fs::write(src.join("base/shutdown.rs"), "").unwrap();
    let map = entries(
        "## Layout\n\n```\nsrc/lib.rs   the map\nsrc/base/    shutdown.rs,\n              gone.rs\n```\n",
    );
    let found = drift(tmp.path(), &map);
    assert_eq!(
        found,
        vec!["src/base/ names gone.rs, which is not there".to_string()]
    );
    std::fs::write(src.join("base/new.rs"), "").unwrap();
    std::fs::create_dir_all(src.join("extra")).unwrap();
    std::fs::write(src.join("setup.rs"), "").unwrap();
    let found = drift(tmp.path(), &map).join("\n");
    for want in [
        "src/base/new.rs is not named",
        "src/extra/ is not in",
        "src/setup.rs: src/ holds only",
        "src/setup.rs is not in",
    ] {
        assert!(found.contains(want), "{want:?} missing from:\n{found}");
    }
}

#[test]
fn lib_rs_draws_every_top_folder_in_its_layers() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let doc: String = lib
        .lines()
        .filter(|l| l.starts_with("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let (_, dirs) = names_in(&root().join("src"));
    for d in dirs {
        assert!(
            doc.contains(&format!("{d}/")),
            "src/lib.rs's map does not draw {d}/"
        );
    }
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `pub fn` signatures in `text` whose return type is `Result<_, String>`,
/// as `name -> return type`; signatures may span lines.
fn string_results(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("pub fn ") {
        let sig_start = &rest[at + "pub fn ".len()..];
        let end = sig_start.find(['{', ';']).unwrap_or(sig_start.len());
        let sig = sig_start[..end]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if let Some((_, ret)) = sig.rsplit_once("->") {
            let ret = ret.split(" where ").next().unwrap_or(ret).trim();
            if ret.starts_with("Result<") && ret.replace(' ', "").ends_with(",String>") {
                let name = sig.split(['(', '<']).next().unwrap_or("");
                found.push(format!("{name} -> {ret}"));
            }
        }
        rest = &sig_start[end..];
    }
    found
}

#[test]
fn no_public_fn_returns_a_string_error_and_no_test_switch_is_in_src() {
    let mut problems = Vec::new();
    for f in rust_files(&root().join("src")) {
        let text = std::fs::read_to_string(&f).unwrap();
        let shown = f.strip_prefix(root()).unwrap().display().to_string();
        for s in string_results(&text) {
            problems.push(format!("{shown}: pub fn {s}: give it an error type"));
        }
        if text.contains("EDGEWATCH_TEST_") {
            problems.push(format!(
                "{shown}: a test switch (EDGEWATCH_TEST_…); use runtime::seams"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The scan itself finds what it looks for.
    let sample = "pub fn a(x: u8)\n    -> Result<Vec<u8>, String> {\n}\npub fn b() -> Result<(), MyError> {}\npub fn c() -> Option<String> {}";
    assert_eq!(
        string_results(sample),
        vec!["a -> Result<Vec<u8>, String>".to_string()]
    );
}

/// Every `pub mod` inside a folder: the folder's face is its `pub use`
/// lines, so a new submodule is `pub(crate)` unless it is named here.
fn public_submodules(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&root.join("src")) {
        if file.file_name().and_then(|n| n.to_str()) != Some("mod.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let folder = file
            .parent()
            .unwrap()
            .strip_prefix(root.join("src"))
            .unwrap()
            .display()
            .to_string();
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("pub mod ") {
                found.push(format!("{folder}/{}", name.trim_end_matches(';')));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn folders_offer_their_face_through_pub_use_not_every_submodule() {
    // Modules whose functions are the face (db::decode, stream::run), the
    // two backends' own folders, and TensorRT's, whose items the feature
    // build uses from outside its folder.
    let allowed = [
        "infer/onnxruntime",
        "infer/tensorrt",
        "infer/tensorrt/background",
        "infer/tensorrt/cache",
        "infer/tensorrt/check",
        "infer/tensorrt/engine",
        "infer/tensorrt/ffi",
        "infer/tensorrt/libs",
        "infer/tensorrt/settings",
        "infer/tensorrt/startup",
        "postprocess/db",
        "source/stream",
    ];
    let extra: Vec<String> = public_submodules(&root())
        .into_iter()
        .filter(|m| !allowed.contains(&m.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "make these pub(crate) and `pub use` what other crates need from them: {extra:?}"
    );
}
