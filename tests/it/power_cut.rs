//! Power cuts, not only crashes: the outbox (and, in the second variant,
//! the whole folder tree) on the power-cut filesystem (`powercut/`), which
//! keeps what was not fsynced in memory and loses it, whole or in part, at
//! a cut. Each run drops a batch of images, cuts the power at a random
//! change the daemon makes (once or twice), kills the daemon with -9,
//! remounts what the disk kept and starts again, with the broker up
//! throughout. Afterwards every file is in `done/` once, each has a
//! well-formed message delivered, and a message delivered twice is the
//! same message.
//!
//! `POWERCUT_RUNS` sets the runs per variant (default 20, CI's share);
//! `POWERCUT_SEED` replays a run's choices (printed on failure). Timing
//! still varies from run to run: the seed picks the moment as a count of
//! the daemon's changes, and which change comes at that count can differ.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Broker, Daemon, Subscriber};
use edgewatch_powercut::{mount, Disk, Mount};
use image::{Rgb, RgbImage};

const BATCH: usize = 30;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Variant {
    /// The outbox on the power-cut disk; the folders on a disk that keeps everything.
    Outbox,
    /// The inbox, `done/`, `failed/` and the outbox all on the power-cut disk.
    Tree,
}

/// The batch: distinct images, each with one bright block the test model
/// finds.
fn batch() -> Vec<(String, Vec<u8>)> {
    (0..BATCH)
        .map(|i| {
            let side = 48 + 4 * i as u32;
            let mut img = RgbImage::new(side, side);
            for y in side / 4..side / 2 {
                for x in side / 4..3 * side / 4 {
                    img.put_pixel(x, y, Rgb([255, 255, 255]));
                }
            }
            let mut png = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            (format!("img-{i:02}.png"), png)
        })
        .collect()
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

/// Files (not directories) in `dir`, by name, with their bytes.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

struct Layout {
    inbox: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    outbox: PathBuf,
}

impl Layout {
    fn new(variant: Variant, disk: &Path, host: &Path) -> Layout {
        let tree = match variant {
            Variant::Outbox => host,
            Variant::Tree => disk,
        };
        Layout {
            inbox: tree.join("inbox"),
            done: tree.join("done"),
            failed: tree.join("failed"),
            outbox: disk.join("outbox"),
        }
    }

    /// Every image is in exactly one of the inbox, `.processing`, `done/`
    /// and `failed/`, with its bytes whole: files only ever move.
    fn check_every_file_once(&self, batch: &[(String, Vec<u8>)], when: &str) {
        let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (place, dir) in [
            ("inbox", self.inbox.clone()),
            (".processing", self.inbox.join(".processing")),
            ("done", self.done.clone()),
            ("failed", self.failed.clone()),
        ] {
            for (name, bytes) in files_in(&dir) {
                if name.ends_with(".error.json") {
                    continue;
                }
                let want = batch.iter().find(|(n, _)| *n == name);
                let want = want.unwrap_or_else(|| panic!("{when}: a stray file {place}/{name}"));
                assert!(
                    want.1 == bytes,
                    "{when}: {place}/{name} changed ({} bytes, was {})",
                    bytes.len(),
                    want.1.len()
                );
                seen.entry(name).or_default().push(place);
            }
        }
        for (name, _) in batch {
            let places = seen.get(name).cloned().unwrap_or_default();
            assert_eq!(places.len(), 1, "{when}: {name} is in {places:?}");
        }
    }
}

fn config(dir: &Path, l: &Layout, broker: &Broker) -> PathBuf {
    let cfg = dir.join("edgewatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[model]\npath = {:?}\n[tiling]\nmode = \"off\"\n[[source]]\nname = \"dock\"\nkind = \"folder\"\npath = {:?}\ndone = {:?}\nfailed = {:?}\nsettle_ms = 50\nrescan_s = 1\n[mqtt]\nurl = \"{}\"\noutbox = {:?}\n[telemetry]\nlisten = \"127.0.0.1:{}\"\n",
            common::test_model("db-bright.onnx").display().to_string(),
            l.inbox.display().to_string(),
            l.done.display().to_string(),
            l.failed.display().to_string(),
            broker.url(),
            l.outbox.display().to_string(),
            common::free_port(),
        ),
    )
    .unwrap();
    cfg
}

/// What one message says about its frame, without what may differ between
/// two runs over the same file (timings, the per-run sequence number).
fn essence(m: &serde_json::Value) -> serde_json::Value {
    let mut m = m.clone();
    let obj = m.as_object_mut().unwrap();
    obj.remove("timing_ms");
    obj.remove("seq");
    m
}

#[derive(Default)]
struct Tally {
    cuts: usize,
    redelivered: usize,
    torn_logs: usize,
    damaged_logs: usize,
    kept: Vec<String>,
}

/// One run: the batch, `cuts` power cuts at changes drawn from `1..=span`
/// (none when calibrating), then on to the end. Returns the changes the
/// daemon made in its last life.
fn one_run(
    variant: Variant,
    seed: u64,
    span: Option<u64>,
    broker: &Broker,
    tally: &mut Tally,
) -> u64 {
    let mut rng = fastrand::Rng::with_seed(seed);
    let batch = batch();
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("disk");
    let host = dir.path().join("host");
    std::fs::create_dir_all(&at).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    let mut m: Mount = mount(&at, Disk::default())
        .expect("mount the power-cut filesystem (needs root and /dev/fuse, as CI has)");
    let l = Layout::new(variant, &at, &host);
    std::fs::create_dir_all(&l.inbox).unwrap();
    for (name, bytes) in &batch {
        let mut f = File::create(l.inbox.join(name)).unwrap();
        f.write_all(bytes).unwrap();
        f.sync_all().unwrap();
    }
    sync_dir(&l.inbox);
    let cfg = config(dir.path(), &l, broker);
    let sub = Subscriber::connect(broker.port, "edgewatch/#");

    let mut cuts_left = match span {
        Some(_) => 1 + rng.usize(0..2),
        None => 0,
    };
    let arm = |m: &Mount, rng: &mut fastrand::Rng, left: usize| {
        if let (Some(span), true) = (span, left > 0) {
            m.arm(rng.u64(1..=span));
        }
    };
    arm(&m, &mut rng, cuts_left);
    let mut daemon = Daemon::start(&cfg);
    let deadline = Instant::now() + Duration::from_secs(180);
    // All in done/ and each delivered; or all in done/ for 20 s, when the
    // checks below say which message never came.
    let mut all_done_since: Option<Instant> = None;
    let mut complete = |sub: &Subscriber| {
        let done = files_in(&l.done);
        if done.len() < BATCH {
            all_done_since = None;
            return false;
        }
        let since = *all_done_since.get_or_insert_with(Instant::now);
        let got = common::detections_by_file(sub);
        done.keys().all(|n| got.contains_key(n)) || since.elapsed() > Duration::from_secs(20)
    };
    loop {
        assert!(
            Instant::now() < deadline,
            "seed {seed}: the batch did not finish in 180 s; {} done",
            files_in(&l.done).len()
        );
        if m.tripped() {
            daemon.kill9();
            tally.torn_logs += daemon.log().iter().filter(|l| l.contains("torn")).count();
            let (disk, report) = m.cut(rng.u64(..));
            tally.cuts += 1;
            tally
                .kept
                .push(format!("{variant:?} run seed {seed}: {report}"));
            m = mount(&at, disk).unwrap();
            l.check_every_file_once(&batch, &format!("seed {seed}, after the cut ({report})"));
            cuts_left -= 1;
            arm(&m, &mut rng, cuts_left);
            daemon = Daemon::start(&cfg);
            continue;
        }
        if complete(&sub) {
            if cuts_left == 0 || span.is_none() {
                break;
            }
            // The moment drawn lies past the end: cut now, while idle.
            m.arm(1);
            std::thread::sleep(Duration::from_millis(300));
            if !m.tripped() {
                cuts_left = 0;
                continue;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ops = m.counts().ops;
    let log = daemon.log();
    tally.torn_logs += log.iter().filter(|l| l.contains("torn")).count();
    tally.damaged_logs += log.iter().filter(|l| l.contains("damaged")).count();
    // Let the last acknowledgements and any redelivery land.
    std::thread::sleep(Duration::from_millis(300));
    daemon.kill9();

    let when = format!("seed {seed}, at the end");
    l.check_every_file_once(&batch, &when);
    let done: BTreeSet<String> = files_in(&l.done).into_keys().collect();
    let all: BTreeSet<String> = batch.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(done, all, "{when}: every file in done/");
    assert!(files_in(&l.failed).is_empty(), "{when}: nothing failed");
    let got = common::detections_by_file(&sub);
    let mut ids = BTreeSet::new();
    for name in &done {
        let msgs = got
            .get(name)
            .unwrap_or_else(|| panic!("{when}: {name} is in done/ and no message came"));
        let first = essence(&msgs[0]);
        for again in &msgs[1..] {
            assert_eq!(
                essence(again),
                first,
                "{when}: {name} delivered twice, differently"
            );
        }
        assert!(
            !msgs[0]["detections"].as_array().unwrap().is_empty(),
            "{when}: {name} has its detection"
        );
        ids.insert(msgs[0]["id"].as_str().unwrap().to_string());
        tally.redelivered += msgs.len() - 1;
    }
    assert_eq!(ids.len(), BATCH, "{when}: one id per file");
    assert!(
        got.keys().all(|n| all.contains(n)),
        "{when}: only batch files"
    );
    drop(sub);
    let _ = m.shut_down();
    ops
}

fn power_cuts(variant: Variant) {
    let runs: usize = std::env::var("POWERCUT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let base: u64 = std::env::var("POWERCUT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000
        });
    let broker = Broker::start();
    let mut tally = Tally::default();
    // One run without a cut measures how many changes a batch makes.
    let span = one_run(variant, base, None, &broker, &mut tally);
    assert!(
        span > BATCH as u64,
        "the daemon made {span} changes on the disk"
    );
    let started = Instant::now();
    for run in 0..runs as u64 {
        one_run(variant, base + 1 + run, Some(span), &broker, &mut tally);
    }
    eprintln!(
        "{variant:?}: {runs} runs (seeds {}..={}), {} cut(s) over {span} changes a batch, {:.0} s; {} redelivered message(s); {} torn-tail and {} damaged-record log line(s)",
        base + 1,
        base + runs as u64,
        tally.cuts,
        started.elapsed().as_secs_f64(),
        tally.redelivered,
        tally.torn_logs,
        tally.damaged_logs
    );
    for k in &tally.kept {
        eprintln!("  {k}");
    }
    assert!(tally.cuts >= runs, "every run cut the power at least once");
}

#[test]
fn power_cuts_under_the_outbox_lose_no_detection() {
    power_cuts(Variant::Outbox);
}

#[test]
fn power_cuts_under_the_whole_folder_tree_lose_no_file_and_no_detection() {
    power_cuts(Variant::Tree);
}
