//! The fake UVC camera (`tests/fake_v4l2/fake_v4l2.c`): built here with the
//! system's C compiler, preloaded into `edgewatch`, configured and driven
//! through small files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The interposer, compiled once per test run.
pub fn library() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_v4l2/fake_v4l2.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("libfake_v4l2.so");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let built = Command::new(&cc)
            .args([
                "-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o",
            ])
            .arg(&out)
            .arg(&src)
            .args(["-ldl", "-lpthread"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run {cc} (install gcc: deploy/install-deps.sh does): {e}")
            });
        assert!(
            built.status.success(),
            "{cc} failed on {}:\n{}",
            src.display(),
            String::from_utf8_lossy(&built.stderr)
        );
        out
    })
}

/// One configured device of the fake.
pub struct FakeDevice {
    /// The node path it answers for, e.g. `/dev/video42`.
    pub path: String,
    control: PathBuf,
    status: PathBuf,
}

impl FakeDevice {
    /// Sets the fault state: `plug`, `unplug`, `stall` or `eio <anything new>`.
    pub fn control(&self, word: &str) {
        let tmp = self.control.with_extension("tmp");
        std::fs::write(&tmp, word).unwrap();
        std::fs::rename(&tmp, &self.control).unwrap();
    }

    /// The fake's counters for this device (opens, failed_opens, streamons,
    /// frames, enodev, eio, unplugged); empty before the first open.
    pub fn status(&self) -> HashMap<String, u64> {
        std::fs::read_to_string(&self.status)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// One counter, 0 when not yet written.
    pub fn count(&self, key: &str) -> u64 {
        self.status().get(key).copied().unwrap_or(0)
    }

    /// Waits until counter `key` reaches `at_least`, or panics saying `what`.
    pub fn wait_count(&self, key: &str, at_least: u64, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while self.count(key) < at_least {
            assert!(
                Instant::now() < deadline,
                "{what}: {key} stayed below {at_least} for {timeout:?}; fake's status: {:?}",
                self.status()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A set of fake devices and the configuration file that describes them.
pub struct FakeV4l2 {
    config: PathBuf,
    text: String,
    dir: PathBuf,
}

impl FakeV4l2 {
    /// An empty set whose files live in `dir`.
    pub fn new(dir: &Path) -> FakeV4l2 {
        FakeV4l2 {
            config: dir.join("fake_v4l2.conf"),
            text: String::new(),
            dir: dir.into(),
        }
    }

    /// Adds a device at `path` streaming `replay`; `extra` are further
    /// `key value` lines (card, offer, grant, pad).
    pub fn add(&mut self, path: &str, replay: &Path, extra: &[&str]) -> FakeDevice {
        let stem = path.trim_start_matches("/dev/");
        let control = self.dir.join(format!("{stem}.control"));
        let status = self.dir.join(format!("{stem}.status"));
        self.text += &format!(
            "device {path}\nreplay {}\ncontrol {}\nstatus {}\n",
            replay.display(),
            control.display(),
            status.display()
        );
        for line in extra {
            self.text += line;
            self.text.push('\n');
        }
        std::fs::write(&self.config, &self.text).unwrap();
        let dev = FakeDevice {
            path: path.into(),
            control,
            status,
        };
        dev.control("plug");
        dev
    }

    /// The environment that puts the fake under a process.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LD_PRELOAD".into(), library().display().to_string()),
            ("FAKE_V4L2_CONFIG".into(), self.config.display().to_string()),
        ]
    }
}

/// Open file descriptors and resident memory (KiB) of a process.
pub fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss)
}
