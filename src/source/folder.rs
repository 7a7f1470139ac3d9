//! Watched folder source. A file moves `inbox → inbox/.processing → done |
//! failed` by rename, so every file is in exactly one place and a crash never
//! loses one: files left in `.processing` are re-queued at start-up.

use crate::base::issue::Issue;
use crate::base::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{SendTimeoutError, Sender};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use serde::Deserialize;

use super::Job;
use crate::base::frame::FrameMeta;

/// `[[source]] kind = "folder"`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// Source name (topic segment).
    pub name: String,
    /// The inbox directory that is watched.
    pub path: PathBuf,
    /// Where processed files go; default `done/` beside the inbox.
    #[serde(default)]
    pub done: Option<PathBuf>,
    /// Where files that could not be processed go; default `failed/` beside the inbox.
    #[serde(default)]
    pub failed: Option<PathBuf>,
    /// A file found by a scan (not by a close-after-write event) is taken only
    /// once it has not changed for this long, so half-written files wait.
    #[serde(default = "d_settle_ms")]
    pub settle_ms: u64,
    /// Full rescan interval, a safety net under inotify.
    #[serde(default = "d_rescan_s")]
    pub rescan_s: u64,
}

fn d_settle_ms() -> u64 {
    1000
}
fn d_rescan_s() -> u64 {
    10
}

/// The directories one folder source uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderPaths {
    /// Watched directory.
    pub inbox: PathBuf,
    /// Files being processed (inside the inbox, so the claim is an atomic rename).
    pub processing: PathBuf,
    /// Processed files.
    pub done: PathBuf,
    /// Failed files, each with a `<name>.error.json`.
    pub failed: PathBuf,
}

impl FolderConfig {
    pub(crate) fn resolve_paths(&mut self, resolve: &dyn Fn(&mut PathBuf)) {
        resolve(&mut self.path);
        if let Some(p) = self.done.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.failed.as_mut() {
            resolve(p);
        }
    }

    /// The directories, with defaults filled in.
    pub fn paths(&self) -> FolderPaths {
        let beside = |name: &str| {
            self.path
                .parent()
                .map(|p| p.join(name))
                .unwrap_or_else(|| PathBuf::from(name))
        };
        FolderPaths {
            inbox: self.path.clone(),
            processing: self.path.join(".processing"),
            done: self.done.clone().unwrap_or_else(|| beside("done")),
            failed: self.failed.clone().unwrap_or_else(|| beside("failed")),
        }
    }

    /// Problems, keyed within the source.
    pub fn validate(&self) -> Vec<Issue> {
        let mut out = Vec::new();
        let p = self.paths();
        if p.done == p.inbox || p.done.starts_with(&p.inbox) {
            out.push(Issue::new(
                "done",
                format!("{} must not be the inbox or inside it", p.done.display()),
            ));
        }
        if p.failed == p.inbox || p.failed.starts_with(&p.inbox) {
            out.push(Issue::new(
                "failed",
                format!("{} must not be the inbox or inside it", p.failed.display()),
            ));
        }
        if p.failed == p.done {
            out.push(Issue::new("failed", "must differ from `done`"));
        }
        if self.rescan_s == 0 {
            out.push(Issue::new("rescan_s", "must be at least 1 second"));
        }
        for (key, dir) in [("path", &p.inbox), ("done", &p.done), ("failed", &p.failed)] {
            if let Some(file) = dir
                .ancestors()
                .find(|a| a.is_file() || (a == dir && a.exists() && !a.is_dir()))
            {
                out.push(Issue::new(
                    key,
                    format!(
                        "{} cannot be a folder: {} is a file, not a directory",
                        dir.display(),
                        file.display()
                    ),
                ));
            }
        }
        out
    }
}

/// A claimed file, waiting in `.processing` until it is done or failed.
#[derive(Debug)]
pub struct FolderJob {
    /// Where the file is now.
    pub path: PathBuf,
    /// Frame identity.
    pub meta: FrameMeta,
    paths: Arc<FolderPaths>,
}

/// What `<name>.error.json` holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct FailureRecord {
    /// The file as it was found in the inbox.
    pub file: String,
    /// Source name.
    pub source: String,
    /// Pipeline stage that failed.
    pub stage: String,
    /// One-line reason.
    pub error: String,
    /// When it failed (RFC 3339).
    pub time: String,
}

impl FolderJob {
    /// Moves the file to `done/` (renamed `name.N.ext` if the name is taken).
    pub fn done(self) -> std::io::Result<PathBuf> {
        move_into(&self.paths.done, &self.path)
    }

    /// Moves the file to `failed/` and writes `<name>.error.json` beside it.
    pub fn failed(self, stage: &str, error: &str) -> std::io::Result<PathBuf> {
        let dest = move_into(&self.paths.failed, &self.path)?;
        let record = FailureRecord {
            file: self
                .meta
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            source: self.meta.source.clone(),
            stage: stage.to_string(),
            error: error.to_string(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
        };
        let json_path = dest.with_file_name(sidecar_name(dest.file_name().unwrap_or_default()));
        let tmp = json_path.with_extension("json.tmp");
        // One line, as documented: `tail`, `jq -c` and log shippers read it.
        let mut line = serde_json::to_vec(&record).expect("record serialises");
        line.push(b'\n');
        std::fs::write(&tmp, line)?;
        std::fs::rename(&tmp, &json_path)?;
        Ok(dest)
    }
}

/// Renames `from` to `to` unless `to` exists: atomically with
/// `renameat2(RENAME_NOREPLACE)` (a raw syscall: glibc 2.27, the Jetson
/// Nano's, has no wrapper), else by hard link and unlink where the
/// filesystem lacks it. `AlreadyExists` when `to` is taken.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            std::fs::hard_link(from, to)?;
            std::fs::remove_file(from)
        }
        _ => Err(err),
    }
}

/// `<name>.error.json`, shortened when that would pass the 255-byte name
/// limit (its `.tmp` while written included): the name's start, `~`, and a
/// hash of the whole name, so it stays unique.
fn sidecar_name(name: &std::ffi::OsStr) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    const SUFFIX: &[u8] = b".error.json";
    const ROOM: usize = 255 - SUFFIX.len() - ".tmp".len();
    let bytes = name.as_bytes();
    let mut out = if bytes.len() <= ROOM {
        bytes.to_vec()
    } else {
        let hash = crc32fast::hash(bytes);
        let mut short = bytes[..ROOM - 9].to_vec();
        short.extend_from_slice(format!("~{hash:08x}").as_bytes());
        short
    };
    out.extend_from_slice(SUFFIX);
    std::ffi::OsString::from_vec(out)
}

/// Moves `file` into `dir` under its name, or `stem.N.ext` for the first
/// free N; never over an existing file, even one another worker is moving
/// there at the same moment.
fn move_into(dir: &Path, file: &Path) -> std::io::Result<PathBuf> {
    let name = file.file_name().unwrap_or_default();
    for n in 0u64.. {
        let dest = dir.join(numbered(name, n));
        match rename_noreplace(file, &dest) {
            Ok(()) => return Ok(dest),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some name is free")
}

/// `name` (n = 0) or `stem.n.ext`, its stem cut short where the number
/// would pass the 255-byte name limit. Bytes, not text: a name that is not
/// UTF-8 keeps its bytes.
fn numbered(name: &std::ffi::OsStr, n: u64) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    if n == 0 {
        return name.to_owned();
    }
    let bytes = name.as_bytes();
    // The extension starts at the last dot that is not the first byte.
    let split = bytes
        .iter()
        .rposition(|&b| b == b'.')
        .filter(|&i| i > 0)
        .unwrap_or(bytes.len());
    let (stem, ext) = bytes.split_at(split);
    let number = format!(".{n}");
    let room = 255usize.saturating_sub(number.len() + ext.len());
    let mut out = stem[..stem.len().min(room)].to_vec();
    out.extend_from_slice(number.as_bytes());
    out.extend_from_slice(ext);
    std::ffi::OsString::from_vec(out)
}

/// Names writers use while a file is incomplete; such files are never taken.
fn is_temporary(name: &str) -> bool {
    const SUFFIXES: [&str; 6] = [".tmp", ".part", ".partial", ".crdownload", ".swp", "~"];
    name.starts_with('.') || SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// Errors that stop a folder source.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// A directory could not be created or read.
    #[error("folder source {source_name:?}: cannot use {path}: {err}; check that it exists and the daemon may write to it")]
    Dir {
        /// Source name.
        source_name: String,
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        err: std::io::Error,
    },
    /// inotify could not be set up.
    #[error("folder source {source_name:?}: cannot watch {path}: {err}; raise fs.inotify.max_user_watches or check the path")]
    Watch {
        /// Source name.
        source_name: String,
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        err: notify::Error,
    },
}

/// A running folder source: claims complete files and sends them downstream.
pub struct FolderSource {
    cfg: FolderConfig,
    paths: Arc<FolderPaths>,
    tx: Sender<Job>,
    stop: Shutdown,
    seq: u64,
    next_scan: Instant,
    heartbeat: Option<Arc<crate::base::heartbeats::Stage>>,
    /// Names waiting in the inbox because a file of that name is queued.
    waiting: std::collections::HashSet<std::ffi::OsString>,
    /// Entries that are not regular files, logged once each.
    skipped: std::collections::HashSet<std::ffi::OsString>,
    /// A shared flock on the `.processing` directory while running: it
    /// tells a daemon starting on the same (network) inbox that the files
    /// in `.processing` may be someone's work in flight, not a crash's.
    users: Option<std::fs::File>,
}

impl FolderSource {
    /// Creates the directories (inbox, `.processing`, done, failed) if needed.
    pub fn new(
        cfg: FolderConfig,
        tx: Sender<Job>,
        stop: Shutdown,
    ) -> Result<FolderSource, FolderError> {
        let paths = cfg.paths();
        if !paths.inbox.exists() {
            // A typo in `path` would otherwise watch a new, empty folder
            // quietly while the camera uploads somewhere else.
            tracing::warn!(source = %cfg.name, "{} did not exist and was created; if that is not the folder files are dropped into, fix `path`", paths.inbox.display());
        }
        for dir in [&paths.inbox, &paths.processing, &paths.done, &paths.failed] {
            std::fs::create_dir_all(dir).map_err(|err| FolderError::Dir {
                source_name: cfg.name.clone(),
                path: dir.clone(),
                err,
            })?;
        }
        Ok(FolderSource {
            cfg,
            paths: Arc::new(paths),
            tx,
            stop,
            seq: 0,
            next_scan: Instant::now(),
            heartbeat: None,
            waiting: Default::default(),
            skipped: Default::default(),
            users: None,
        })
    }

    /// Beats `stage` while the source runs or waits for inference.
    pub fn with_heartbeat(mut self, stage: Arc<crate::base::heartbeats::Stage>) -> Self {
        self.heartbeat = Some(stage);
        self
    }

    fn beat(&self) {
        if let Some(h) = &self.heartbeat {
            h.beat();
        }
    }

    /// Runs until `stop` is set or downstream goes away.
    pub fn run(mut self) -> Result<(), FolderError> {
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = ev_tx.send(res);
        })
        .map_err(|err| self.watch_error(err))?;
        // Watch before scanning so no file falls between the two.
        watcher
            .watch(&self.paths.inbox, RecursiveMode::NonRecursive)
            .map_err(|err| self.watch_error(err))?;
        self.requeue_processing()?;
        tracing::info!(source = %self.cfg.name, "watching {}", self.paths.inbox.display());
        while !self.stop.is_stopping() {
            self.beat();
            if Instant::now() >= self.next_scan && !self.scan()? {
                return Ok(());
            }
            match ev_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(event)) => {
                    if event.need_rescan() {
                        self.next_scan = Instant::now();
                    }
                    if is_complete_file_event(&event.kind) {
                        for path in event.paths {
                            if path.parent() == Some(self.paths.inbox.as_path())
                                && !self.take(&path, false)
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(source = %self.cfg.name, "inotify error ({e}); rescanning");
                    self.next_scan = Instant::now();
                }
                Err(_) => {}
            }
        }
        Ok(())
    }

    fn watch_error(&self, err: notify::Error) -> FolderError {
        FolderError::Watch {
            source_name: self.cfg.name.clone(),
            path: self.paths.inbox.clone(),
            err,
        }
    }

    fn list(&self, dir: &Path) -> Result<Vec<PathBuf>, FolderError> {
        let entries = std::fs::read_dir(dir).map_err(|err| FolderError::Dir {
            source_name: self.cfg.name.clone(),
            path: dir.to_path_buf(),
            err,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.path())
            .collect();
        files.sort();
        Ok(files)
    }

    /// Files a crash left in `.processing` go downstream first, but only
    /// when no other daemon works on this inbox: daemons sharing one inbox
    /// (several PCs on a network folder) each hold a shared lock, and the
    /// files in `.processing` are then another one's work in flight.
    fn requeue_processing(&mut self) -> Result<(), FolderError> {
        // The directory itself is locked: no file of ours lies among the
        // claimed ones.
        let lock_path = self.paths.processing.clone();
        let dir_error = |err| FolderError::Dir {
            source_name: self.cfg.name.clone(),
            path: lock_path.clone(),
            err,
        };
        let users = std::fs::File::open(&lock_path).map_err(dir_error)?;
        let alone = match users.try_lock() {
            Ok(()) => true,
            Err(std::fs::TryLockError::WouldBlock) => false,
            Err(std::fs::TryLockError::Error(err)) => return Err(dir_error(err)),
        };
        let left = self.list(&self.paths.processing.clone())?;
        // Shared from here on (an exclusive flock converts in place), so a
        // daemon starting later sees this one and leaves our files alone.
        users.lock_shared().map_err(dir_error)?;
        self.users = Some(users);
        if !alone {
            if !left.is_empty() {
                tracing::info!(source = %self.cfg.name, "{} file(s) in {} belong to another daemon on this inbox; left to it", left.len(), self.paths.processing.display());
            }
            return Ok(());
        }
        for path in left {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let original = self.paths.inbox.join(path.file_name().unwrap_or_default());
            tracing::info!(source = %self.cfg.name, "re-queuing {} left by an earlier run", original.display());
            let job = self.job(path, original, &meta);
            if !self.send(job) {
                break;
            }
        }
        Ok(())
    }

    /// Returns false when the source should stop.
    fn scan(&mut self) -> Result<bool, FolderError> {
        self.next_scan = Instant::now() + Duration::from_secs(self.cfg.rescan_s);
        for path in self.list(&self.paths.inbox.clone())? {
            if !self.take(&path, true) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Claims `path` by renaming it into `.processing` and sends it on.
    /// Returns false when the source should stop.
    fn take(&mut self, path: &Path, from_scan: bool) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return true;
        };
        // Names need not be UTF-8: they are handled as bytes, and shown lossily.
        if is_temporary(&name.to_string_lossy()) {
            return true;
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return true; // already claimed or removed
        };
        if !meta.is_file() {
            if self.skipped.insert(name.clone()) {
                tracing::debug!(source = %self.cfg.name, "leaving {} alone: not a regular file (symlinks, FIFOs, directories and devices are never taken)", path.display());
            }
            return true;
        }
        if from_scan {
            let settle = Duration::from_millis(self.cfg.settle_ms);
            let age = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or(settle);
            if age < settle {
                // Maybe still being written; look again once it has settled.
                self.next_scan = self.next_scan.min(Instant::now() + (settle - age));
                return true;
            }
        }
        let dest = self.paths.processing.join(&name);
        match rename_noreplace(path, &dest) {
            Ok(()) => {
                self.waiting.remove(&name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                // A file of this name is still queued: claiming this one
                // would overwrite it. It waits in the inbox until that one
                // is done, and is looked at again each second.
                if self.waiting.insert(name) {
                    tracing::info!(source = %self.cfg.name, "{}: a file of the same name is still queued; this one waits in the inbox until that one is done", path.display());
                }
                self.next_scan = self.next_scan.min(Instant::now() + Duration::from_secs(1));
                return true;
            }
            Err(e) => {
                tracing::warn!(source = %self.cfg.name, "cannot claim {}: {e}; leaving it in the inbox", path.display());
                return true;
            }
        }
        let job = self.job(dest, path.to_path_buf(), &meta);
        self.send(job)
    }

    fn job(&mut self, path: PathBuf, original: PathBuf, meta: &std::fs::Metadata) -> FolderJob {
        self.seq += 1;
        let captured_at = meta.modified().unwrap_or_else(|_| SystemTime::now());
        FolderJob {
            meta: FrameMeta {
                source: self.cfg.name.clone(),
                seq: self.seq,
                id: stable_id(&self.cfg.name, &original, meta.len(), captured_at),
                captured_at,
                path: Some(original),
            },
            path,
            paths: self.paths.clone(),
        }
    }

    /// Blocks while inference is busy: the file waits on disk, nothing is lost.
    fn send(&self, mut job: FolderJob) -> bool {
        loop {
            match self
                .tx
                .send_timeout(Job::File(job), Duration::from_millis(200))
            {
                Ok(()) => return true,
                Err(SendTimeoutError::Timeout(Job::File(j))) => {
                    // Waiting for inference is legitimate; a hung worker is
                    // caught by its own heartbeat.
                    self.beat();
                    if self.stop.is_stopping() {
                        // Stays in .processing; the next start re-queues it.
                        return false;
                    }
                    job = j;
                }
                Err(SendTimeoutError::Timeout(Job::Frame(_))) => {
                    unreachable!("only files are sent here")
                }
                Err(SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    }
}

/// Close-after-write or moved-in: the file is complete.
fn is_complete_file_event(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

/// Same file (name, size, modification time) → same id, across restarts
/// (and the same id `edgewatch detect` gives that file).
pub fn stable_id(source: &str, original: &Path, size: u64, mtime: SystemTime) -> String {
    crate::base::frame::frame_id(
        source,
        &[
            original.file_name().unwrap_or_default().as_encoded_bytes(),
            &size.to_le_bytes(),
        ],
        mtime,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::bounded;

    fn config(dir: &Path) -> FolderConfig {
        FolderConfig {
            name: "inbox".into(),
            path: dir.join("inbox"),
            done: None,
            failed: None,
            settle_ms: 0,
            rescan_s: 1,
        }
    }

    fn start(
        cfg: FolderConfig,
        cap: usize,
    ) -> (
        crossbeam_channel::Receiver<Job>,
        Shutdown,
        std::thread::JoinHandle<()>,
    ) {
        let (tx, rx) = bounded(cap);
        let stop = Shutdown::new();
        let src = FolderSource::new(cfg, tx, stop.clone()).unwrap();
        let t = std::thread::spawn(move || src.run().unwrap());
        (rx, stop, t)
    }

    fn recv(rx: &crossbeam_channel::Receiver<Job>) -> FolderJob {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Job::File(job)) => job,
            Ok(Job::Frame(_)) => panic!("a folder sends files"),
            Err(e) => panic!("no job within 10 s: {e}"),
        }
    }

    #[test]
    fn default_dirs_sit_beside_the_inbox() {
        let cfg = config(Path::new("/var/lib/edgewatch"));
        let p = cfg.paths();
        assert_eq!(p.done, PathBuf::from("/var/lib/edgewatch/done"));
        assert_eq!(p.failed, PathBuf::from("/var/lib/edgewatch/failed"));
        assert_eq!(
            p.processing,
            PathBuf::from("/var/lib/edgewatch/inbox/.processing")
        );
        assert!(cfg.validate().is_empty());
        let bad = FolderConfig {
            done: Some("/var/lib/edgewatch/inbox/done".into()),
            ..cfg
        };
        assert_eq!(bad.validate()[0].key, "done");
    }

    #[test]
    fn existing_files_are_claimed_and_moved_to_done() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(&cfg.path).unwrap();
        std::fs::write(cfg.path.join("b.jpg"), b"2").unwrap();
        std::fs::write(cfg.path.join("a.jpg"), b"1").unwrap();
        std::fs::write(cfg.path.join(".hidden.jpg"), b"x").unwrap();
        std::fs::write(cfg.path.join("c.jpg.part"), b"x").unwrap();
        let (rx, stop, t) = start(cfg.clone(), 4);
        let a = recv(&rx);
        let b = recv(&rx);
        assert_eq!(
            a.path,
            cfg.path.join(".processing/a.jpg"),
            "scan goes in name order"
        );
        assert_eq!(b.meta.seq, 2);
        assert!(a.path.exists() && !cfg.path.join("a.jpg").exists());
        assert_eq!(
            a.meta.path.as_deref(),
            Some(cfg.path.join("a.jpg").as_path())
        );
        let done = a.done().unwrap();
        assert_eq!(done, dir.path().join("done/a.jpg"));
        assert_eq!(std::fs::read(done).unwrap(), b"1");
        assert!(
            rx.recv_timeout(Duration::from_millis(1500)).is_err(),
            "hidden and partial files are left alone"
        );
        assert!(cfg.path.join(".hidden.jpg").exists() && cfg.path.join("c.jpg.part").exists());
        stop.stop();
        t.join().unwrap();
        drop(b);
    }

    #[test]
    fn files_written_or_moved_in_later_are_picked_up_by_events() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path());
        cfg.rescan_s = 3600; // only events can find the files
        let (rx, stop, t) = start(cfg.clone(), 4);
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(cfg.path.join("written.png"), b"w").unwrap();
        let j = recv(&rx);
        assert!(j.path.ends_with(".processing/written.png"));
        let outside = dir.path().join("staged.png");
        std::fs::write(&outside, b"m").unwrap();
        std::fs::rename(&outside, cfg.path.join("moved.png")).unwrap();
        let j = recv(&rx);
        assert!(j.path.ends_with(".processing/moved.png"));
        stop.stop();
        t.join().unwrap();
    }

    #[test]
    fn failed_files_get_an_error_record() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(&cfg.path).unwrap();
        std::fs::write(cfg.path.join("bad.jpg"), b"junk").unwrap();
        let (rx, stop, t) = start(cfg.clone(), 1);
        let job = recv(&rx);
        let dest = job.failed("decode", "not a supported image").unwrap();
        assert_eq!(dest, dir.path().join("failed/bad.jpg"));
        let record: FailureRecord = serde_json::from_slice(
            &std::fs::read(dir.path().join("failed/bad.jpg.error.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record.stage, "decode");
        assert_eq!(record.error, "not a supported image");
        assert_eq!(record.source, "inbox");
        assert!(record.file.ends_with("inbox/bad.jpg"));
        stop.stop();
        t.join().unwrap();
    }

    #[test]
    fn files_left_in_processing_are_requeued_with_the_same_id() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(&cfg.path).unwrap();
        std::fs::write(cfg.path.join("x.jpg"), b"data").unwrap();
        let (rx, stop, t) = start(cfg.clone(), 1);
        let first = recv(&rx);
        // Simulate a crash: the job is never finished.
        stop.stop();
        t.join().unwrap();
        let id = first.meta.id.clone();
        drop(first);
        assert!(cfg.path.join(".processing/x.jpg").exists());
        let (rx, stop, t) = start(cfg.clone(), 1);
        let again = recv(&rx);
        assert_eq!(again.meta.id, id, "stable id across restarts");
        assert_eq!(again.path, cfg.path.join(".processing/x.jpg"));
        again.done().unwrap();
        stop.stop();
        t.join().unwrap();
        assert!(dir.path().join("done/x.jpg").exists());
    }

    #[test]
    fn files_in_processing_are_left_to_another_daemon_on_the_same_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(cfg.path.join(".processing")).unwrap();
        std::fs::write(cfg.path.join(".processing/theirs.jpg"), b"data").unwrap();
        // Another daemon, running: it holds the shared lock (its own open).
        let other = std::fs::File::open(cfg.path.join(".processing")).unwrap();
        other.lock_shared().unwrap();
        std::fs::write(cfg.path.join("mine.jpg"), b"data").unwrap();
        let (rx, stop, t) = start(cfg.clone(), 1);
        let job = recv(&rx);
        assert_eq!(job.path, cfg.path.join(".processing/mine.jpg"));
        job.done().unwrap();
        assert!(
            rx.recv_timeout(Duration::from_millis(500)).is_err(),
            "the other daemon's file was taken"
        );
        assert!(cfg.path.join(".processing/theirs.jpg").exists());
        stop.stop();
        t.join().unwrap();
        // The other daemon is gone (crashed): the next start re-queues it.
        drop(other);
        let (rx, stop, t) = start(cfg.clone(), 1);
        let job = recv(&rx);
        assert_eq!(job.path, cfg.path.join(".processing/theirs.jpg"));
        job.done().unwrap();
        stop.stop();
        t.join().unwrap();
    }

    #[test]
    fn done_never_overwrites_an_earlier_file_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("a.jpg"), b"old").unwrap();
        std::fs::write(d.join("a.1.jpg"), b"older").unwrap();
        let new = dir.path().join("a.jpg");
        std::fs::write(&new, b"new").unwrap();
        assert_eq!(move_into(&d, &new).unwrap(), d.join("a.2.jpg"));
        assert_eq!(std::fs::read(d.join("a.jpg")).unwrap(), b"old");
        assert_eq!(std::fs::read(d.join("a.1.jpg")).unwrap(), b"older");
        assert_eq!(std::fs::read(d.join("a.2.jpg")).unwrap(), b"new");
    }

    #[test]
    fn a_255_byte_name_that_comes_again_is_numbered_within_the_limit() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir_all(&d).unwrap();
        // Not UTF-8 either: the bytes are kept.
        let mut name = vec![b'n'; 250];
        name[3] = 0xff;
        name.extend_from_slice(b".jpeg");
        let name = std::ffi::OsStr::from_bytes(&name);
        for (i, content) in [b"one", b"two", b"thr"].iter().enumerate() {
            let src = dir.path().join(name);
            std::fs::write(&src, content).unwrap();
            let dest = move_into(&d, &src).unwrap();
            let got = dest.file_name().unwrap().as_bytes();
            assert!(got.len() <= 255, "{} bytes", got.len());
            let end = match i {
                0 => b".jpeg".to_vec(),
                i => format!(".{i}.jpeg").into_bytes(),
            };
            assert!(got.ends_with(&end), "{:?}", dest);
            assert_eq!(got[3], 0xff);
            assert_eq!(&std::fs::read(&dest).unwrap(), content);
        }
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 3);
    }

    #[test]
    fn back_pressure_leaves_files_in_the_inbox() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        std::fs::create_dir_all(&cfg.path).unwrap();
        for i in 0..5 {
            std::fs::write(cfg.path.join(format!("{i}.jpg")), b"x").unwrap();
        }
        let (rx, stop, t) = start(cfg.clone(), 1);
        std::thread::sleep(Duration::from_millis(500));
        // One in the channel, one held by the blocked sender; the rest wait on disk.
        let waiting = std::fs::read_dir(&cfg.path)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_file())
            .count();
        assert_eq!(waiting, 3);
        stop.stop();
        t.join().unwrap();
        drop(rx);
    }
}
