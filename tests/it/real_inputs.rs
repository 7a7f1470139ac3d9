//! Inputs nobody here made: OCRmyPDF's test scans (engines/fetch-real-images.sh
//! fetches them from PyPI, pinned by sha256), and TIFFs written by netpbm, a
//! real tool, the way scanners write them (1-bit, CCITT G4, in strips).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn real(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("engines/test/real")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing; fetch it with engines/fetch-real-images.sh (bash .ci/run does this)",
        p.display()
    );
    p
}

/// The default configuration: what an operator gets.
fn default_config(dir: &Path) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n",
            common::model_path().display().to_string()
        ),
    )
    .unwrap();
    cfg
}

/// `pngtopnm | pgmtopbm | pnmtotiff -g4 -rowsperstrip 64`.
fn g4_tiff(png: &Path, out: &Path) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "pngtopnm '{}' | pgmtopbm -threshold | pnmtotiff -g4 -rowsperstrip 64 > '{}'",
            png.display(),
            out.display()
        ))
        .status()
        .expect("netpbm (deploy/install-deps.sh --tests installs it)");
    assert!(status.success() && out.metadata().unwrap().len() > 1000);
}

fn iou(a: &[f64], b: &[f64]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let area = |r: &[f64]| (r[2] - r[0]) * (r[3] - r[1]);
    inter / (area(a) + area(b) - inter)
}

/// A 400-dpi typewriter page (4000x2864, 11.5 MP) was refused at the
/// default budget ("send it as a JPEG"). The default budget now reads it
/// whole; where the plan's `max_pixels` is smaller it is decoded scaled
/// down while it is read, the message says so, and its lines are still
/// found; the same page as a G4 TIFF in strips gives the same boxes.
#[test]
fn a_400_dpi_scan_as_png_and_g4_tiff_is_read_inside_the_default_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = default_config(dir.path());
    let png = real("typewriter.png");
    let tif = dir.path().join("typewriter.tif");
    g4_tiff(&png, &tif);
    let whole = common::detect(&cfg, std::slice::from_ref(&png));
    assert_eq!(
        whole[0]["image"]["scaled_to"],
        serde_json::Value::Null,
        "{}",
        whole[0]
    );
    assert!(common::boxes(&whole[0]).len() >= 15, "{}", whole[0]);
    // A plan that holds 3 MP a frame decodes it at half size.
    let small = dir.path().join("small.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&small, format!("max_pixels = 3000000\n{text}")).unwrap();
    let msgs = common::detect(&small, &[png, tif]);
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert_eq!(
            (m["image"]["width"].as_u64(), m["image"]["height"].as_u64()),
            (Some(4000), Some(2864))
        );
        assert_eq!(
            m["image"]["scaled_to"],
            serde_json::json!([2000, 1432]),
            "{m}"
        );
    }
    let (a, b) = (common::boxes(&msgs[0]), common::boxes(&msgs[1]));
    eprintln!(
        "typewriter: {} boxes from the PNG, {} from the TIFF",
        a.len(),
        b.len()
    );
    assert!(a.len() >= 15, "the page's lines: {}", a.len());
    let matched = a
        .iter()
        .filter(|x| b.iter().any(|y| iou(x, y) >= 0.8))
        .count();
    assert!(
        matched * 10 >= a.len() * 9,
        "{matched} of {} boxes match",
        a.len()
    );
    // Boxes are in the scan's own pixels, spread over the page.
    let right = a.iter().map(|r| r[2]).fold(0.0, f64::max);
    assert!(right > 2000.0 && right <= 4000.0, "{right}");
}

/// A 300-dpi letter page (8.4 MP, 1-bit palette PNG) at full size.
#[test]
fn a_300_dpi_letter_page_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = default_config(dir.path());
    let msgs = common::detect(&cfg, &[real("linn.png")]);
    let boxes = common::boxes(&msgs[0]);
    eprintln!("linn: {} boxes, image {}", boxes.len(), msgs[0]["image"]);
    assert!(boxes.len() >= 40, "{}", boxes.len());
}
