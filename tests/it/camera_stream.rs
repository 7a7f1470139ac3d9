//! The camera streaming loop, driven by real replay files on disk: newest
//! frame hand-over with a slow consumer, `fps` pacing, and reconnects after
//! a stream is lost mid-way (no growth in file descriptors or memory).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Receiver};
use edgewatch::base::Shutdown;
use edgewatch::source::encode_frame;
use edgewatch::source::stream::{self, FrameOutput, StreamSettings};
use edgewatch::source::Job;
use edgewatch::source::PixelFormat;
use edgewatch::source::{FramePool, LatestFrame};
use edgewatch::source::{ReplayConfig, ReplayHeader, ReplayOpener, ReplayWriter};
use image::{Rgb, RgbImage};

/// File descriptors and RSS are per process: these tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// `frames` frames of a test card at `fps`.
fn write_replay(path: &Path, frames: u32, fps: f64, format: PixelFormat) {
    let mut w = ReplayWriter::create(
        path,
        ReplayHeader {
            format,
            width: 64,
            height: 48,
            fps: Some(fps),
        },
    )
    .unwrap();
    for i in 0..frames {
        let img = RgbImage::from_fn(64, 48, |x, y| Rgb([(i * 8 % 256) as u8, x as u8, y as u8]));
        w.push_at(
            Duration::from_secs_f64(i as f64 / fps),
            &encode_frame(&img, format),
        )
        .unwrap();
    }
    w.finish().unwrap();
}

fn replay(path: &Path, looping: bool, realtime: bool) -> ReplayConfig {
    ReplayConfig {
        name: "cam".into(),
        path: path.into(),
        fps: None,
        every_nth: 1,
        looping,
        realtime,
        stream: edgewatch::source::StreamKeys::default(),
    }
}

fn settings(fps: Option<f64>, reconnect: Duration) -> StreamSettings {
    StreamSettings {
        name: "cam".into(),
        fps,
        every_nth: 1,
        reconnect_min: reconnect,
        reconnect_max: reconnect,
        max_pixels: 1 << 20,
        motion: None,
    }
}

struct Taken {
    seq: u64,
    age: Duration,
}

/// A stand-in for the inference workers: redeems tickets, holds each frame
/// for `work`, records what it got.
fn consume(
    rx: Receiver<Job>,
    work: Duration,
    log: Arc<Mutex<Vec<Taken>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while let Ok(job) = rx.recv() {
            let Job::Frame(ticket) = job else {
                panic!("only frames here")
            };
            if let Some(frame) = ticket.take(Duration::from_secs(1)) {
                let age = SystemTime::now()
                    .duration_since(frame.meta.captured_at)
                    .unwrap_or_default();
                log.lock().unwrap().push(Taken {
                    seq: frame.meta.seq,
                    age,
                });
                std::thread::sleep(work);
            }
        }
    })
}

fn output(workers: usize) -> (FrameOutput, Receiver<Job>) {
    let (tx, rx) = bounded(workers * 2);
    (
        FrameOutput {
            latest: LatestFrame::new(workers),
            pool: FramePool::new(workers + 2),
            tx,
        },
        rx,
    )
}

#[test]
fn slow_inference_gets_the_newest_frame_and_older_ones_are_dropped() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.ewraw");
    // 2 s of a 30 fps camera.
    write_replay(&path, 60, 30.0, PixelFormat::Yuyv);
    let (out, rx) = output(1);
    let log = Arc::new(Mutex::new(Vec::new()));
    let worker = consume(rx, Duration::from_millis(300), log.clone());
    let stop = Shutdown::new();
    let mut opener = ReplayOpener::new(&replay(&path, false, true));
    stream::run(
        &mut opener,
        &settings(None, Duration::from_millis(10)),
        &out,
        &stop,
        None,
    )
    .unwrap();
    let latest = out.latest.clone();
    drop(out);
    let counts = &latest.counts;
    worker.join().unwrap();
    let taken = log.lock().unwrap();
    let captured = counts.captured.load(Ordering::Relaxed);
    assert_eq!(captured, 60);
    // A 300 ms engine keeps up with about 3 frames a second.
    assert!(
        (5..=9).contains(&taken.len()),
        "{} frames inferred",
        taken.len()
    );
    let not_inferred =
        counts.skipped.load(Ordering::Relaxed) + counts.dropped.load(Ordering::Relaxed);
    assert_eq!(not_inferred + taken.len() as u64, captured);
    // Each frame inferred was fresh when taken: at most about one camera
    // frame interval old, never a queued backlog.
    for t in taken.iter() {
        assert!(
            t.age < Duration::from_millis(150),
            "frame {} was {:?} old",
            t.seq,
            t.age
        );
    }
    assert!(taken.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(latest.in_flight(), 0);
    assert_eq!(counts.taken.load(Ordering::Relaxed), taken.len() as u64);
}

#[test]
fn fps_caps_the_inference_rate() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.ewraw");
    // 3 s at 30 fps, capped at 4 fps: about 12 frames.
    write_replay(&path, 90, 30.0, PixelFormat::Mjpeg);
    let (out, rx) = output(2);
    let pool = out.pool.clone();
    let log = Arc::new(Mutex::new(Vec::new()));
    let worker = consume(rx, Duration::ZERO, log.clone());
    let stop = Shutdown::new();
    let mut opener = ReplayOpener::new(&replay(&path, false, true));
    let start = Instant::now();
    stream::run(
        &mut opener,
        &settings(Some(4.0), Duration::from_millis(10)),
        &out,
        &stop,
        None,
    )
    .unwrap();
    let took = start.elapsed();
    drop(out);
    worker.join().unwrap();
    let n = log.lock().unwrap().len();
    let expect = took.as_secs_f64() * 4.0;
    assert!(
        (n as f64 - expect).abs() <= 2.0,
        "{n} frames in {took:?} at 4 fps (expected about {expect:.0})"
    );
    assert!(pool.allocated() <= 4, "{} buffers", pool.allocated());
}

/// Most descriptors open over 50 ms: the replay file is open or not at any
/// instant, a leak grows with every reconnect.
/// Open files under `dir` (what a replay reconnect opens): other tests in
/// this process open and close pipes, sockets and files of their own.
fn open_fds(dir: &Path) -> usize {
    (0..50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(1));
            std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .flatten()
                .filter(|e| {
                    std::fs::read_link(e.path())
                        .map(|t| t.starts_with(dir))
                        .unwrap_or(false)
                })
                .count()
        })
        .max()
        .unwrap()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_lost_stream_comes_back_without_leaking() {
    let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cam.ewraw");
    write_replay(&path, 8, 30.0, PixelFormat::Mjpeg);
    let (out, rx) = output(2);
    let latest = out.latest.clone();
    let log = Arc::new(Mutex::new(Vec::new()));
    let worker = consume(rx, Duration::ZERO, log.clone());
    let stop = Shutdown::new();
    let streamer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Lost after every 3 frames, as an unplugged camera; played as
            // fast as it reads so 100 reconnects take seconds.
            let mut opener = ReplayOpener::new(&replay(&path, true, false)).fail_every(3);
            stream::run(
                &mut opener,
                &settings(None, Duration::from_millis(1)),
                &out,
                &stop,
                None,
            )
        })
    };
    let wait_reconnects = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while latest.counts.reconnects.load(Ordering::Relaxed) < n {
            assert!(
                Instant::now() < deadline,
                "stuck at {} reconnects",
                latest.counts.reconnects.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait_reconnects(10);
    let (fds, rss) = (open_fds(dir.path()), rss_kib());
    let taken_before = log.lock().unwrap().len();
    wait_reconnects(110);
    let (fds_after, rss_after) = (open_fds(dir.path()), rss_kib());
    let taken_after = log.lock().unwrap().len();
    stop.stop();
    streamer.join().unwrap().unwrap();
    worker.join().unwrap();
    assert!(
        taken_after > taken_before + 50,
        "frames resume after each reconnect: {taken_before} -> {taken_after}"
    );
    assert!(
        fds_after <= fds,
        "open files grew from {fds} to {fds_after} over 100 reconnects"
    );
    assert!(
        rss_after <= rss + 1024,
        "RSS grew from {rss} KiB to {rss_after} KiB over 100 reconnects"
    );
}
