//! `[read]`: the text in each box, read by PP-OCRv4's recognizer (the real
//! model, fetched by engines/fetch-models.sh) on a real typewriter scan and
//! on rendered labels, through `detect` and through the daemon to MQTT.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::textimg::{draw_text, font, render};
use common::{Broker, Daemon, Subscriber};

fn rec_model() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/ppocr-rec-v4.onnx");
    assert!(
        p.exists(),
        "{} is missing: run engines/fetch-models.sh",
        p.display()
    );
    p
}

/// A `detect` config on tract with `[read]` and `extra` lines in it.
fn config(dir: &Path, extra_top: &str, read_extra: &str) -> PathBuf {
    let cfg = dir.join("read.toml");
    std::fs::write(
        &cfg,
        format!(
            "{extra_top}[model]\npath = {:?}\nbackend = \"cpu\"\n[read]\npath = {:?}\n{read_extra}",
            common::model_path().display().to_string(),
            rec_model().display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// Every read in a message, whitespace removed (PP-OCR's recognizer is not
/// sure of the spaces between words; case and every other character count).
fn reads(msg: &serde_json::Value) -> Vec<String> {
    msg["detections"]
        .as_array()
        .expect("detections")
        .iter()
        .filter_map(|d| d["text"].as_str())
        .map(squash)
        .collect()
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Lines of the page as a person reads them, checked by eye against the
/// scan (engines/test/real/typewriter.png, a 1950s Dutch recipe).
const TYPEWRITER_LINES: [&str; 10] = [
    "Linzensoep",
    "a la Waterman",
    "3 liter water",
    "3 uien",
    "bloem, boter",
    "2 kopjes",
    "laurier,",
    "De linzen",
    "de uien bakken met laurier en kruidnagel.",
    "verder afmaken met de",
];

fn lines_read(msg: &serde_json::Value) -> usize {
    let got = reads(msg);
    TYPEWRITER_LINES
        .iter()
        .filter(|l| got.contains(&squash(l)))
        .count()
}

#[test]
fn a_real_typewriter_page_is_read_line_for_line_whole_and_scaled_down() {
    let dir = tempfile::tempdir().unwrap();
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("engines/test/real/typewriter.png");
    let whole = common::detect(&config(dir.path(), "", ""), std::slice::from_ref(&page));
    let n = lines_read(&whole[0]);
    eprintln!(
        "typewriter: {n}/10 lines read exactly; reads: {:?}",
        reads(&whole[0])
    );
    assert!(n >= 9, "{n}/10 lines: {:?}", reads(&whole[0]));
    let d = &whole[0]["detections"][0];
    assert!(d["text_score"].as_f64().unwrap() > 0.5, "{d}");
    assert!(whole[0]["timing_ms"]["read"].as_f64().unwrap() > 0.0);
    // Decoded at half size to fit a smaller plan: the crops are cut from the
    // frame in memory, in its own pixels, and still read.
    let small = config(dir.path(), "max_pixels = 3000000\n", "");
    let scaled = common::detect(&small, std::slice::from_ref(&page));
    assert!(scaled[0]["image"]["scaled_to"].is_array(), "{}", scaled[0]);
    // The coarser map joins words into longer boxes here, so lines are
    // looked for in the page's text in reading order, not box by box.
    let page_text = reads(&scaled[0]).concat();
    let m = TYPEWRITER_LINES
        .iter()
        .filter(|l| page_text.contains(&squash(l)))
        .count();
    eprintln!("typewriter at half size: {m}/10 lines read exactly");
    assert!(m >= 7, "{m}/10 lines at half size: {:?}", reads(&scaled[0]));
}

/// A light label with one container code on a darker board.
fn label(path: &Path, code: &str) {
    let mut img = image::RgbImage::from_pixel(900, 400, image::Rgb([90, 100, 110]));
    for y in 120..260 {
        for x in 100..800 {
            img.put_pixel(x, y, image::Rgb([235, 235, 225]));
        }
    }
    draw_text(&mut img, &font(), 64.0, 150.0, 215.0, code, [20, 20, 30]).unwrap();
    common::save(&img, path);
}

fn only_read(cfg: &Path, img: &Path) -> Vec<serde_json::Value> {
    let msgs = common::detect(cfg, &[img.to_path_buf()]);
    msgs[0]["detections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d.get("text").is_some())
        .cloned()
        .collect()
}

#[test]
fn a_pattern_keeps_only_matching_reads_and_a_known_code_corrects_one_character() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("label.png");
    label(&img, "MSCU1234565");
    let plain = only_read(&config(dir.path(), "", ""), &img);
    assert_eq!(plain.len(), 1, "{plain:?}");
    assert_eq!(plain[0]["text"], "MSCU1234565", "{plain:?}");
    assert!(plain[0].get("text_read_as").is_none());

    let container = config(dir.path(), "", "pattern = '^[A-Z]{4}\\d{7}$'\n");
    assert_eq!(only_read(&container, &img).len(), 1);
    let other = config(dir.path(), "", "pattern = '^[A-Z]{3}-\\d+$'\n");
    assert!(
        only_read(&other, &img).is_empty(),
        "a read that misses the pattern is not said"
    );

    // The register says ...66; the label reads ...65: one edit, corrected.
    let known = config(
        dir.path(),
        "",
        "known = [\"TGHU9876543\", \"MSCU1234566\"]\n",
    );
    let got = only_read(&known, &img);
    assert_eq!(got[0]["text"], "MSCU1234566", "{got:?}");
    assert_eq!(got[0]["text_read_as"], "MSCU1234565", "{got:?}");
}

#[test]
fn a_recognizer_that_is_missing_or_does_not_fit_its_dictionary_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("label.png");
    label(&img, "AB12");
    let run = |cfg: &Path| {
        let out = Command::new(common::bin())
            .args(["detect", "--config"])
            .arg(cfg)
            .arg(&img)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        format!(
            "[model]\npath = {:?}\n[read]\npath = \"nowhere/rec.onnx\"\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    let (code, err) = run(&missing);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("key `read.path`") && err.contains("fetch-models.sh"),
        "{err}"
    );

    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "A\nB\n1\n2\n").unwrap();
    let (code, err) = run(&config(
        dir.path(),
        "",
        &format!("keys_file = {:?}\n", keys.display().to_string()),
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key `read.keys_file`"), "{err}");
    assert!(
        err.contains("6625 classes") && err.contains("4 characters"),
        "{err}"
    );

    let (code, err) = run(&config(dir.path(), "", "pattern = '(['\n"));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("key `read.pattern`"), "{err}");
}

#[test]
fn the_daemon_publishes_what_each_box_says_from_a_watched_folder() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/#");
    let cfg = config(
        dir.path(),
        "device = \"reader\"\n",
        &format!(
            "[[source]]\nname = \"inbox\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 200\n[mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n",
            broker.url()
        ),
    );
    let inbox = dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let (img, truth) = render(1280, 720, 4407, 5, 30, 40);
    common::save(&img, &inbox.join("page.png"));
    let daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(60));
    let topic = "edgewatch/reader/inbox/detections";
    let got = sub.wait_until(Duration::from_secs(120), "the page's message", |all| {
        all.iter().any(|m| m.topic == topic)
    });
    let msg = got.iter().find(|m| m.topic == topic).unwrap().json();
    let read = reads(&msg);
    let exact = truth
        .iter()
        .filter(|t| read.contains(&squash(&t.text)))
        .count();
    eprintln!(
        "rendered lines read exactly: {exact}/{}: {read:?}",
        truth.len()
    );
    assert!(
        exact + 1 >= truth.len(),
        "{exact}/{}: {read:?}",
        truth.len()
    );
    drop(daemon);
}
