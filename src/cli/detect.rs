//! `edgewatch detect`: one JSON message per image, in input order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use crate::base::frame::FrameMeta;
use crate::config::Purpose;
use crate::infer::detector::Detector;
use crate::runtime::inference as setup;
use crate::sink::payload::Message;

use super::{exit_code, load, start_error};

/// Detects on `images` with the config at `path`; `print_plan` shows the
/// memory plan first.
pub fn detect(
    path: &Path,
    images: &[PathBuf],
    print_plan: bool,
    seams: crate::runtime::seams::Seams,
) -> ExitCode {
    let config = match load(path, Purpose::Detect) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if print_plan {
        let note = config
            .plan_fitted
            .as_deref()
            .map(|n| format!("{n}\n"))
            .unwrap_or_default();
        match config.memory_plan() {
            Ok(plan) if images.is_empty() => println!("{note}{plan}"),
            Ok(plan) => eprintln!("{note}{plan}"),
            Err(e) => {
                eprintln!("edgewatch: {}: {}", e.key, e.reason);
                return ExitCode::from(2);
            }
        }
        if images.is_empty() {
            return ExitCode::SUCCESS;
        }
    }
    let (mut model, plan) = match setup::load_model(&config) {
        Ok(m) => m,
        Err(e) => return start_error(path, &e),
    };
    model.engines = seams.engines(model.engines);
    let workers = plan.workers;
    let settings = match setup::detector_settings(&config, plan.max_pixels, &model) {
        Ok(s) => s,
        Err(e) => return exit_code(path, &e.issue().into()),
    };
    let reader = match setup::load_reader(&config, &model, workers) {
        Ok(r) => r,
        Err(e) => return start_error(path, &e),
    };
    let second = || reader.as_ref().map(|r| r.stage()).transpose();
    let next = AtomicUsize::new(0);
    quiet_panics();
    let (tx, rx) = crossbeam_channel::unbounded::<(usize, Result<String, String>)>();
    let workers = workers.min(images.len()).max(1);
    let failed = std::thread::scope(|scope| {
        for _ in 0..workers {
            let engine = match model.engines.engine() {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("edgewatch: {e}");
                    return usize::MAX;
                }
            };
            let mut detector = Detector::new(engine, settings.clone());
            match second() {
                Ok(stage) => detector.set_second_stage(stage),
                Err(e) => {
                    eprintln!("edgewatch: {e}");
                    return usize::MAX;
                }
            }
            let (tx, next, model, config, settings, second) =
                (tx.clone(), &next, &model, &config, &settings, &second);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(image) = images.get(i) else { break };
                // A panic costs this image only: it is one stderr line and
                // a non-zero exit, and every other image still gets its
                // message. The engine may be mid-run: a fresh one follows.
                let detected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    detector.detect_file(image)
                }));
                let detected = match detected {
                    Ok(d) => d,
                    Err(_) => {
                        let why = last_panic();
                        if let Ok(engine) = model.engines.engine() {
                            detector = Detector::new(engine, settings.clone());
                            detector.set_second_stage(second().ok().flatten());
                        }
                        let _ = tx.send((
                            i,
                            Err(format!(
                                "internal error, the image was not processed ({why}); please report it with this image"
                            )),
                        ));
                        continue;
                    }
                };
                let out = detected
                    .map(|result| {
                        let file = std::fs::metadata(image).ok();
                        let captured_at = file
                            .as_ref()
                            .and_then(|m| m.modified().ok())
                            .unwrap_or_else(SystemTime::now);
                        let size = file.map(|m| m.len()).unwrap_or(0);
                        let meta = FrameMeta {
                            source: "cli".into(),
                            seq: i as u64 + 1,
                            // As a folder source names it: the same file
                            // gets the same id on every run.
                            id: crate::source::folder::stable_id("cli", image, size, captured_at),
                            captured_at,
                            path: Some(image.clone()),
                        };
                        Message::new(&config.device, &meta, &model.info, &result).to_json()
                    })
                    .map_err(|e| {
                        format!(
                            "{} (stage {})",
                            crate::base::text::one_line(&e.to_string()),
                            e.stage()
                        )
                    });
                if tx.send((i, out)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        // Print in input order as results arrive.
        let mut pending = BTreeMap::new();
        let mut printed = 0;
        let mut failed = 0;
        let stdout = std::io::stdout();
        for (i, out) in rx {
            pending.insert(i, out);
            while let Some(out) = pending.remove(&printed) {
                match out {
                    Ok(line) => {
                        let mut lock = stdout.lock();
                        let _ = writeln!(lock, "{line}");
                        let _ = lock.flush();
                    }
                    Err(e) => {
                        failed += 1;
                        eprintln!("edgewatch: {}: {e}", images[printed].display());
                    }
                }
                printed += 1;
            }
        }
        failed
    });
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

thread_local! {
    /// The last panic on this thread, one line with its place.
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Panics are reported by `detect` as one line per image: the hook only
/// keeps the message and where it happened for that line.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        // "panicked at FILE:LINE:COL:\nmessage" on one line.
        let text = crate::base::text::one_line(&info.to_string().replacen(":\n", ": ", 1));
        LAST_PANIC.with(|l| *l.borrow_mut() = text);
    }));
}

fn last_panic() -> String {
    LAST_PANIC.with(|l| std::mem::take(&mut *l.borrow_mut()))
}
