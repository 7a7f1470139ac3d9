//! The memory promise, measured on the real process: the daemon's peak RSS
//! (VmHWM) stays under `memory_budget_mb` over 200 frames of 1080p and 4K,
//! a 20000×20000 PNG and an 8000×6000 JPEG, and its RSS does not creep.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::textimg::render;
use common::{Broker, Daemon, Subscriber};

const BUDGET_MB: u64 = 256;

fn status_kb(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

fn count(dir: &Path, pred: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| pred(&e.file_name().to_string_lossy()))
                .count()
        })
        .unwrap_or(0)
}

/// Frames finished (done or failed), waiting until `n` or panicking.
fn wait_processed(root: &Path, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let done = count(&root.join("done"), |n| !n.starts_with('.'));
        let failed = count(&root.join("failed"), |n| !n.ends_with(".error.json"));
        if done + failed >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {done} done + {failed} failed of {n} after {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A PNG whose header claims `w`×`h`: what a decompression bomb looks like to
/// a decoder that reads the header first.
fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut png = Vec::new();
    image::RgbImage::new(1, 1)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn peak_rss_stays_under_the_budget_and_does_not_creep() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let broker = Broker::start();
    let sub = Subscriber::connect(broker.port, "edgewatch/+/+/detections");
    let cfg = root.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "memory_budget_mb = {BUDGET_MB}\n[model]\npath = {:?}\n[tiling]\nscale = 0.5\n\
             [[source]]\nname = \"in\"\nkind = \"folder\"\npath = \"inbox\"\nsettle_ms = 100\n\
             [mqtt]\nurl = \"{}\"\noutbox = \"outbox\"\n",
            common::model_path().display().to_string(),
            broker.url()
        ),
    )
    .unwrap();
    let plan = print_plan(&cfg);
    assert!(plan.status.success());
    eprintln!("{}", String::from_utf8_lossy(&plan.stdout));

    // A few distinct frames, copied under many names (rendering is slow).
    let stock = root.join("stock");
    std::fs::create_dir_all(&stock).unwrap();
    let mut originals = Vec::new();
    for (i, (w, h)) in [(1920, 1080), (1920, 1080), (1080, 1920), (3840, 2160)]
        .into_iter()
        .enumerate()
    {
        let (img, _) = render(w, h, 7000 + i as u64, 12, 16, 40);
        let p = stock.join(format!("f{i}.jpg"));
        common::save(&img, &p);
        originals.push(p);
    }
    let inbox = root.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let drop_frames = |range: std::ops::Range<usize>| {
        for n in range {
            // Every twentieth frame is 4K, the rest 1080p in both orientations.
            let src = if n % 20 == 19 {
                &originals[3]
            } else {
                &originals[n % 3]
            };
            let tmp = inbox.join(format!(".f{n:03}.jpg"));
            std::fs::copy(src, &tmp).unwrap();
            std::fs::rename(&tmp, inbox.join(format!("f{n:03}.jpg"))).unwrap();
        }
    };

    let mut daemon = Daemon::start(&cfg);
    daemon.wait_log("edgewatch ready", Duration::from_secs(120));
    let pid = daemon.pid();
    drop_frames(0..20);
    // The awkward ones: a 20000×20000 PNG (refused from its header) and an
    // 8000×6000 JPEG (decoded at 1/2 or 1/4 scale). They are part of the
    // warm-up: every frame shape gets its optimised plan (a bounded cache the
    // plan accounts for) before the creep is measured.
    std::fs::write(inbox.join("bomb.png"), png_claiming(20000, 20000)).unwrap();
    let (big, _) = render(8000, 6000, 7100, 20, 60, 90);
    common::save(&big, &stock.join("huge.jpg"));
    drop(big);
    std::fs::rename(stock.join("huge.jpg"), inbox.join("huge.jpg")).unwrap();
    wait_processed(root, 22, Duration::from_secs(600));
    std::thread::sleep(Duration::from_secs(1));
    let rss_20 = status_kb(pid, "VmRSS:");

    // 178 more frames of the same kinds: RSS must not creep.
    drop_frames(20..198);
    wait_processed(root, 200, Duration::from_secs(1800));
    std::thread::sleep(Duration::from_secs(1));
    let rss_200 = status_kb(pid, "VmRSS:");
    let hwm = status_kb(pid, "VmHWM:");
    eprintln!(
        "VmHWM {:.1} MiB (budget {BUDGET_MB}); VmRSS after 20 frames {:.1} MiB, after 200 {:.1} MiB",
        hwm as f64 / 1024.0,
        rss_20 as f64 / 1024.0,
        rss_200 as f64 / 1024.0
    );
    assert!(
        hwm <= BUDGET_MB * 1024,
        "peak RSS {hwm} kB is over the {BUDGET_MB} MiB budget"
    );
    assert!(
        rss_200.abs_diff(rss_20) <= 5 * 1024,
        "RSS moved from {rss_20} kB to {rss_200} kB between frame 20 and 200"
    );

    // Nothing lost: 199 published, the bomb in failed/ with its reason.
    assert_eq!(count(&root.join("done"), |n| !n.starts_with('.')), 199);
    let reason = std::fs::read_to_string(root.join("failed/bomb.png.error.json")).unwrap();
    assert!(reason.contains("max_pixels"), "{reason}");
    let msgs = sub.wait_until(Duration::from_secs(60), "199 messages", |m| m.len() >= 199);
    let huge = msgs
        .iter()
        .map(|m| m.json())
        .find(|j| {
            j["image"]["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("huge.jpg"))
        })
        .expect("a message for huge.jpg");
    assert_eq!(huge["image"]["width"], 8000, "{huge}");
    assert!(
        !huge["detections"].as_array().unwrap().is_empty(),
        "nothing found in the scaled-down JPEG: {huge}"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(30)).success());
}

/// `edgewatch detect --print-plan` on `cfg`.
fn print_plan(cfg: &Path) -> std::process::Output {
    Command::new(common::bin())
        .args(["detect", "--print-plan", "--config"])
        .arg(cfg)
        .output()
        .unwrap()
}

#[test]
fn a_budget_that_cannot_fit_exits_2_naming_the_knob() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("small.toml");
    let write = |budget: u64, extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "memory_budget_mb = {budget}\n[model]\npath = {:?}\n{extra}",
                common::model_path().display().to_string()
            ),
        )
        .unwrap()
    };
    // Nothing fits 60 MiB: refused, naming the budget.
    write(60, "");
    let out = print_plan(&cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("memory_budget_mb"), "{err}");
    // 100 MiB does not hold the default 960 px tile and whole-frame side:
    // the plan fits smaller ones before it refuses, and says so.
    write(100, "");
    let out = print_plan(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("do not fit memory_budget_mb = 100 with one worker; using tile"),
        "{text}"
    );
    assert!(text.contains("memory plan"), "{text}");
    // A tile the operator sets that fits is kept as it is.
    write(
        100,
        "[tiling]\nmode = \"tiles\"\ntile = 320\noverlap = 64\n",
    );
    let out = print_plan(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("using tile"), "{text}");
}
