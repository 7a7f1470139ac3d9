//! `edgewatch check-config`: every start-up check, then one frame.

use std::path::Path;
use std::process::ExitCode;

use crate::config::Purpose;
use crate::infer::detector::Detector;
use crate::runtime::inference as setup;

use super::{exit_code, load, start_error};
use crate::base::issue::Issue;

/// Every check the daemon (or `detect`) makes at start-up, then one frame
/// through the engine; "ok" is the last line, printed only when all passed.
pub fn check_config(path: &Path, detect_only: bool) -> ExitCode {
    let purpose = if detect_only {
        Purpose::Detect
    } else {
        Purpose::Run
    };
    let c = match load(path, purpose) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(note) = &c.plan_fitted {
        println!("{note}");
    }
    // Loading the model shows what only the file can: a layout that does
    // not fit the family, labels that do not fit the classes.
    let (model, plan) = match setup::load_model(&c) {
        Ok(m) => m,
        Err(e) => return start_error(path, &e),
    };
    println!("{plan}");
    let settings = match setup::detector_settings(&c, plan.max_pixels, &model) {
        Ok(s) => s,
        Err(e) => return exit_code(path, &e.issue().into()),
    };
    println!(
        "model: {}, {} label(s) ({}), labels from {}, input {}",
        model.head,
        model.labels.len(),
        model
            .labels
            .iter()
            .take(5)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        model.label_origin,
        match model.head {
            crate::infer::model::Head::Db => "dynamic".to_string(),
            _ => format!("{}x{}", model.input.0, model.input.1),
        }
    );
    println!("{}", scaling_note(plan.max_pixels, c.tiling.min_text_px));
    // One grey 1080p frame through the engine: a model that loads but does
    // not run (an operator the backend lacks) fails here, not on the first
    // real frame.
    let engine = match model.engines.engine() {
        Ok(e) => e,
        Err(e) => return exit_code(path, &Issue::new("model.path", e.to_string()).into()),
    };
    let reader = match setup::load_reader(&c, &model, plan.workers) {
        Ok(r) => r,
        Err(e) => return start_error(path, &e),
    };
    let mut detector = Detector::new(engine, settings);
    if let Some(r) = &reader {
        println!("read: {} characters", r.characters());
        match r.stage() {
            Ok(stage) => detector.set_second_stage(Some(stage)),
            Err(e) => return exit_code(path, &Issue::new("read.path", e.to_string()).into()),
        }
    }
    let frame = image::RgbImage::from_pixel(1920, 1080, image::Rgb([128, 128, 128]));
    let started = std::time::Instant::now();
    if let Err(e) = detector.detect_rgb(frame) {
        let issue = Issue::new("model.path", format!("one frame did not run: {e}"));
        return exit_code(path, &issue.into());
    }
    if let Some(choice) = &c.model.backend_choice {
        println!("{choice}");
    }
    println!(
        "one 1920x1080 frame ran on {} in {} ms",
        model.engines.label(),
        started.elapsed().as_millis()
    );
    println!(
        "{}: ok — device {}, model {} (family {}, backend {}), tiling {}, {} source(s){}",
        path.display(),
        c.device,
        c.model.path.display(),
        c.model.family.name(),
        c.model.backend.name(),
        c.tiling.mode.name(),
        c.sources.len(),
        c.mqtt
            .as_ref()
            .map(|m| format!(", broker {}", crate::sink::mqtt::redacted(&m.url)))
            .unwrap_or_default()
    );
    ExitCode::SUCCESS
}

/// What a frame larger than `max_pixels` becomes: decoded scaled down
/// (JPEG, PNG, TIFF), so its text must be taller to survive.
fn scaling_note(max_pixels: u64, min_text_px: f32) -> String {
    let a4_400dpi = 3307u64 * 4677;
    let f = crate::infer::scaled_decode::shrink_factor(3307, 4677, max_pixels);
    format!(
        "frames over {:.1} MP are decoded scaled down (JPEG by 1/2, 1/4 or 1/8; PNG and TIFF by a whole factor){}",
        max_pixels as f64 / 1e6,
        match f {
            Some(f) if a4_400dpi > max_pixels => format!(
                ": a 400-dpi A4 scan ({:.1} MP) is seen at 1/{f}, so text under {:.0} px in the scan may be missed",
                a4_400dpi as f64 / 1e6,
                min_text_px * f as f32
            ),
            _ => String::new(),
        }
    )
}
