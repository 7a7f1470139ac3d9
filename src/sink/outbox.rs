//! Durable outbox: every message is on disk (fsynced) before its frame counts
//! as processed, and leaves only when the broker acknowledged it.
//!
//! A segmented append-only log, written by hand because the embedded stores
//! tried (redb 4.6) refuse to open a file whose tail was cut off, while an
//! edge box must come back from power loss with everything that was whole.
//! Each record is `len u32 | crc32 u32 | body`; a torn or corrupt tail is
//! truncated at start-up. Entries are synced; acknowledgements are not (a
//! lost ack only means a duplicate, which the message id lets consumers drop).
//!
//! A write that fails (a full disk) may leave part of its record in the
//! file: the tail is cut back to the last whole record before anything else
//! is written, or, if even that fails, writing moves on to a new segment,
//! so the index never points at stale offsets. Every read checks the
//! record's CRC and key. At start-up a damaged record in the middle of a
//! segment is skipped and counted, and the whole records after it are kept.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A segment is closed and a new one started past this size.
#[cfg(not(test))]
const SEGMENT_BYTES: u64 = 8 << 20;
/// Small in tests, so property runs cross segment boundaries.
#[cfg(test)]
const SEGMENT_BYTES: u64 = 16 << 10;
const KIND_ENTRY: u8 = 1;
const KIND_ACK: u8 = 2;
/// An entry the broker keeps for late subscribers (MQTT retain); laid out
/// as `KIND_ENTRY`, so older outboxes read the same.
const KIND_RETAINED: u8 = 3;
/// Longest pause between tries while the disk refuses writes.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Errors from the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox directory or a segment could not be used.
    #[error("outbox {path}: {err}; check the disk and that the daemon may write there")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Underlying error.
        err: std::io::Error,
    },
    /// Waiting for space was abandoned (the daemon is stopping).
    #[error("outbox is full ({bytes} of {max} bytes) and the daemon is stopping")]
    Full {
        /// Bytes queued.
        bytes: u64,
        /// Limit.
        max: u64,
    },
    /// A single message larger than the whole outbox.
    #[error("a {size}-byte message cannot fit an outbox of {max} bytes; raise mqtt.outbox_max_mb")]
    TooLarge {
        /// Message size.
        size: u64,
        /// Limit.
        max: u64,
    },
    /// Another process has this outbox open: two writers would hand out the
    /// same keys and acknowledge each other's messages.
    #[error("outbox {dir} is in use by {holder}; give each daemon its own [mqtt] outbox, or stop the other one")]
    Locked {
        /// Outbox directory.
        dir: PathBuf,
        /// Who holds it, e.g. "pid 1234".
        holder: String,
    },
}

/// The lock file in every outbox directory; it holds the pid of its owner.
/// A dot name: it sorts before the segments and is not one of them.
const LOCK_FILE: &str = ".lock";

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the queue; increasing.
    pub key: u64,
    /// MQTT topic.
    pub topic: String,
    /// Message body.
    pub payload: Vec<u8>,
    /// Published with the retain flag.
    pub retain: bool,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

/// What an outbox has written since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wear {
    /// Bytes of records (messages and acks) written.
    pub bytes: u64,
    /// `fsync`s (data syncs) of the segment, one per message.
    pub syncs: u64,
}

struct Inner {
    writer: File,
    segment: u64,
    /// Bytes of whole records in the current segment: where the next one goes.
    segment_len: u64,
    /// A failed write may have left bytes past `segment_len`.
    torn: bool,
    index: BTreeMap<u64, Loc>,
    live: HashMap<u64, usize>,
    next_key: u64,
    bytes: u64,
    /// Since when, and why, appends have been failing.
    failing: Option<(Instant, String)>,
    /// What this outbox has written and synced since it was opened: the
    /// wear it puts on an SD card.
    wear: Wear,
    #[cfg(test)]
    fault: Option<Fault>,
}

/// A write failure to inject in tests: the first `written` bytes of the
/// record really reach the file, then the write fails as a full disk does.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
struct Fault {
    written: usize,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Unacknowledged messages carried over.
    pub pending: usize,
    /// Bytes cut from torn or corrupt segment tails.
    pub truncated_bytes: u64,
    /// Damaged stretches in the middle of segments, skipped (the whole
    /// records after each were kept).
    pub damaged_records: u64,
    /// Bytes in those stretches.
    pub damaged_bytes: u64,
}

/// Why appends are failing, for `/healthz` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteTrouble {
    /// Since when.
    pub since: Instant,
    /// The last error, one line.
    pub reason: String,
}

/// The durable queue. Safe to share between threads.
pub struct Outbox {
    dir: PathBuf,
    /// Held (flock) for the outbox's life; the kernel releases it when the
    /// process dies, so `kill -9` needs no clean-up.
    _lock: File,
    max_bytes: u64,
    inner: Mutex<Inner>,
    space: Condvar,
    /// Records that failed their CRC or key check when read (and were
    /// dropped from the queue), plus those skipped at start-up.
    damaged: AtomicU64,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |err| OutboxError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Takes the outbox's exclusive lock and writes our pid into the lock file.
fn lock(dir: &Path) -> Result<File, OutboxError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut held = String::new();
            let _ = file.read_to_string(&mut held);
            let holder = match held.trim().parse::<u32>() {
                Ok(pid) => format!("pid {pid}"),
                Err(_) => "another process".to_string(),
            };
            return Err(OutboxError::Locked {
                dir: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(err)) => return Err(OutboxError::Io { path, err }),
    }
    // The pid is for the operator's error message only; the lock is the flock.
    let pid = format!("{}\n", std::process::id());
    let written = file
        .set_len(0)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .and_then(|_| file.write_all(pid.as_bytes()));
    written.map_err(io_err(&path))?;
    Ok(file)
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.log"))
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, replaying every segment and
    /// cutting any torn tail.
    ///
    /// Only one process may have an outbox open: a second gets
    /// [`OutboxError::Locked`] naming the pid that holds it.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Outbox, Recovery), OutboxError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock = lock(dir)?;
        let mut segments: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".log")?.parse().ok()
            })
            .collect();
        segments.sort_unstable();
        let mut index = BTreeMap::new();
        let mut live: HashMap<u64, usize> = HashMap::new();
        let mut next_key = 0;
        let mut recovery = Recovery::default();
        let mut last_len = 0;
        for &seg in &segments {
            let path = segment_path(dir, seg);
            let found = replay(&path, seg, &mut index, &mut next_key)?;
            let (valid_len, file_len) = (found.valid_len, found.file_len);
            if found.damaged_records > 0 {
                tracing::error!(
                    "outbox {}: {} damaged record(s) ({} bytes) in the middle of the segment; skipped them and kept the {} whole record(s) after",
                    path.display(),
                    found.damaged_records,
                    found.damaged_bytes,
                    found.records_after_damage
                );
            }
            recovery.damaged_records += found.damaged_records;
            recovery.damaged_bytes += found.damaged_bytes;
            if valid_len < file_len {
                recovery.truncated_bytes += file_len - valid_len;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(valid_len).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            last_len = valid_len;
        }
        for loc in index.values() {
            *live.entry(loc.segment).or_default() += 1;
        }
        // Segments with nothing left to send are history.
        for &seg in segments.iter().rev().skip(1) {
            if !live.contains_key(&seg) {
                let _ = std::fs::remove_file(segment_path(dir, seg));
            }
        }
        let (segment, segment_len) = match segments.last() {
            Some(&s) if last_len < SEGMENT_BYTES => (s, last_len),
            Some(&s) => (s + 1, 0),
            None => (1, 0),
        };
        let path = segment_path(dir, segment);
        let writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        let bytes = index.values().map(|l: &Loc| l.len as u64).sum();
        recovery.pending = index.len();
        Ok((
            Outbox {
                dir: dir.to_path_buf(),
                _lock: lock,
                max_bytes,
                inner: Mutex::new(Inner {
                    writer,
                    segment,
                    segment_len,
                    torn: false,
                    index,
                    live,
                    next_key,
                    bytes,
                    failing: None,
                    wear: Wear::default(),
                    #[cfg(test)]
                    fault: None,
                }),
                space: Condvar::new(),
                damaged: AtomicU64::new(recovery.damaged_records),
            },
            recovery,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a message and syncs it to disk. While the outbox is full it
    /// waits for acknowledgements to free space, and while the disk refuses
    /// the write (full, read-only, failing) it tries again with back-off, as
    /// long as `keep_waiting` says so; detections are never dropped to make
    /// room. The caller's frame waits meanwhile, so sources stop taking
    /// more, and everything resumes by itself once a write succeeds.
    pub fn append(
        &self,
        topic: &str,
        payload: &[u8],
        keep_waiting: impl Fn() -> bool,
    ) -> Result<u64, OutboxError> {
        self.append_with(topic, payload, false, keep_waiting)
    }

    /// [`Outbox::append`], published with the retain flag when `retain`.
    pub fn append_with(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        keep_waiting: impl Fn() -> bool,
    ) -> Result<u64, OutboxError> {
        let body_len = 11 + topic.len() + payload.len();
        let mut body = Vec::with_capacity(body_len);
        let mut inner = self.lock();
        let size = (body_len + 8) as u64;
        if size > self.max_bytes {
            return Err(OutboxError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        body.push(if retain { KIND_RETAINED } else { KIND_ENTRY });
        body.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        let mut warned = false;
        let mut pause = crate::base::backoff::Delay::new(Duration::from_millis(100), RETRY_MAX);
        // Space is checked again after every failed try: other appends may
        // have gone through while this one waited for the disk.
        let loc = loop {
            while inner.bytes + size > self.max_bytes {
                if !keep_waiting() {
                    return Err(OutboxError::Full {
                        bytes: inner.bytes,
                        max: self.max_bytes,
                    });
                }
                if !warned {
                    tracing::warn!(
                        "outbox full ({} messages, {} of {} bytes): waiting for the broker before taking more frames",
                        inner.index.len(),
                        inner.bytes,
                        self.max_bytes
                    );
                    warned = true;
                }
                inner = self
                    .space
                    .wait_timeout(inner, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            // The key is taken only now: another append may have taken the
            // last one meanwhile.
            let key = inner.next_key;
            body[1..9].copy_from_slice(&key.to_le_bytes());
            match self.write_record(&mut inner, &body, true) {
                Ok(loc) => break loc,
                Err(e @ OutboxError::Io { .. }) => {
                    let reason = e.to_string().replace('\n', " ");
                    if inner.failing.is_none() {
                        tracing::error!(
                            "{reason}; frames wait (nothing is dropped) and writing is retried until it works"
                        );
                        inner.failing = Some((Instant::now(), reason));
                    } else if let Some((_, last)) = inner.failing.as_mut() {
                        *last = reason;
                    }
                    if !keep_waiting() {
                        return Err(e);
                    }
                    // The lock is released while waiting: acks go on.
                    inner = self
                        .space
                        .wait_timeout(inner, pause.next_delay())
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                Err(e) => return Err(e),
            }
        };
        if let Some((since, _)) = inner.failing.take() {
            tracing::info!(
                "outbox {}: writing again after {} s; frames move on",
                self.dir.display(),
                since.elapsed().as_secs()
            );
        }
        let key = inner.next_key;
        inner.next_key += 1;
        inner.bytes += loc.len as u64;
        inner.index.insert(key, loc);
        *inner.live.entry(loc.segment).or_default() += 1;
        Ok(key)
    }

    /// Marks `key` delivered. Not synced: after a crash it is sent again.
    pub fn ack(&self, key: u64) -> Result<(), OutboxError> {
        let mut inner = self.lock();
        let Some(loc) = inner.index.remove(&key) else {
            return Ok(());
        };
        inner.bytes -= loc.len as u64;
        let mut body = vec![KIND_ACK];
        body.extend_from_slice(&key.to_le_bytes());
        self.write_record(&mut inner, &body, false)?;
        let left = {
            let n = inner.live.entry(loc.segment).or_default();
            *n -= 1;
            *n
        };
        if left == 0 && loc.segment != inner.segment {
            inner.live.remove(&loc.segment);
            let _ = std::fs::remove_file(segment_path(&self.dir, loc.segment));
        }
        drop(inner);
        self.space.notify_all();
        Ok(())
    }

    /// Up to `max` unacknowledged entries with keys above `after`, in order.
    /// Each record is checked (length, CRC, key) as it is read; one that
    /// fails is logged, counted and dropped from the queue, never sent.
    pub fn read_after(&self, after: Option<u64>, max: usize) -> Result<Vec<Entry>, OutboxError> {
        let locs: Vec<(u64, Loc)> = {
            let inner = self.lock();
            let range = match after {
                Some(k) => inner.index.range(k + 1..),
                None => inner.index.range(..),
            };
            range.take(max).map(|(k, l)| (*k, *l)).collect()
        };
        let mut out = Vec::with_capacity(locs.len());
        let mut files: HashMap<u64, File> = HashMap::new();
        let mut damaged = Vec::new();
        for (key, loc) in locs {
            let path = segment_path(&self.dir, loc.segment);
            let file = match files.entry(loc.segment) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => match File::open(&path) {
                    Ok(f) => v.insert(f),
                    // Acked and removed since the index was read.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err(&path)(e)),
                },
            };
            let mut buf = vec![0u8; loc.len as usize];
            file.seek(SeekFrom::Start(loc.offset))
                .map_err(io_err(&path))?;
            match file.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    damaged.push((key, loc, "the segment ends inside it".to_string()));
                    continue;
                }
                Err(e) => return Err(io_err(&path)(e)),
            }
            match check_record(&buf, key) {
                Ok(entry) => out.push(entry),
                Err(why) => damaged.push((key, loc, why)),
            }
        }
        if !damaged.is_empty() {
            let mut inner = self.lock();
            for (key, loc, why) in damaged {
                tracing::error!(
                    "outbox {}: message {key} at byte {} is damaged ({why}); it cannot be sent and is dropped from the queue",
                    segment_path(&self.dir, loc.segment).display(),
                    loc.offset
                );
                self.damaged.fetch_add(1, Ordering::Relaxed);
                if inner.index.remove(&key).is_some() {
                    inner.bytes -= loc.len as u64;
                    if let Some(n) = inner.live.get_mut(&loc.segment) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            drop(inner);
            self.space.notify_all();
        }
        Ok(out)
    }

    /// Records found damaged (at start-up or when read) since the outbox
    /// was opened.
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// Bytes of records written and data syncs made since the outbox was
    /// opened (acks included).
    pub fn wear(&self) -> Wear {
        self.lock().wear
    }

    /// Why appends are failing right now, if they are.
    pub fn write_trouble(&self) -> Option<WriteTrouble> {
        self.lock()
            .failing
            .as_ref()
            .map(|(since, reason)| WriteTrouble {
                since: *since,
                reason: reason.clone(),
            })
    }

    /// (messages, bytes) waiting for acknowledgement.
    pub fn depth(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.index.len(), inner.bytes)
    }

    /// Writes one record at `segment_len` (syncing when `sync`). On failure
    /// the record's partial bytes are cut off again, so `segment_len` stays
    /// the true end of the whole records.
    fn write_record(&self, inner: &mut Inner, body: &[u8], sync: bool) -> Result<Loc, OutboxError> {
        self.repair_tail(inner)?;
        if inner.segment_len >= SEGMENT_BYTES {
            self.rotate(inner)?;
        }
        let mut record = Vec::with_capacity(8 + body.len());
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        let path = segment_path(&self.dir, inner.segment);
        let written = self.write_all(inner, &record).and_then(|()| {
            if sync {
                inner.writer.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(err) = written {
            inner.torn = true;
            // Best now; if the disk refuses even this, the next write tries again.
            let _ = self.repair_tail(inner);
            return Err(io_err(&path)(err));
        }
        inner.wear.bytes += record.len() as u64;
        inner.wear.syncs += sync as u64;
        let loc = Loc {
            segment: inner.segment,
            offset: inner.segment_len,
            len: record.len() as u32,
        };
        inner.segment_len += record.len() as u64;
        Ok(loc)
    }

    fn write_all(&self, inner: &mut Inner, record: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(fault) = inner.fault.take() {
            inner
                .writer
                .write_all(&record[..fault.written.min(record.len())])?;
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        inner.writer.write_all(record)
    }

    /// After a failed write: cuts the segment back to its whole records. If
    /// the cut itself fails, later records go to a new segment instead, and
    /// the stray bytes are skipped as damage at the next start.
    fn repair_tail(&self, inner: &mut Inner) -> Result<(), OutboxError> {
        if !inner.torn {
            return Ok(());
        }
        let cut = inner
            .writer
            .set_len(inner.segment_len)
            .and_then(|()| inner.writer.sync_data());
        match cut {
            Ok(()) => {
                inner.torn = false;
                Ok(())
            }
            Err(_) => self.rotate(inner),
        }
    }

    /// Starts the next segment; the current one is removed when nothing in
    /// it waits for an ack.
    fn rotate(&self, inner: &mut Inner) -> Result<(), OutboxError> {
        let next = inner.segment + 1;
        let path = segment_path(&self.dir, next);
        inner.writer = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        if inner.live.get(&inner.segment).copied().unwrap_or(0) == 0 {
            let _ = std::fs::remove_file(segment_path(&self.dir, inner.segment));
        }
        inner.segment = next;
        inner.segment_len = 0;
        inner.torn = false;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn decode_entry(body: &[u8]) -> Option<Entry> {
    if body.len() < 11 || !matches!(body[0], KIND_ENTRY | KIND_RETAINED) {
        return None;
    }
    let key = u64::from_le_bytes(body[1..9].try_into().ok()?);
    let tlen = u16::from_le_bytes(body[9..11].try_into().ok()?) as usize;
    let topic = std::str::from_utf8(body.get(11..11 + tlen)?)
        .ok()?
        .to_string();
    Some(Entry {
        key,
        topic,
        payload: body[11 + tlen..].to_vec(),
        retain: body[0] == KIND_RETAINED,
    })
}

/// A stored record checked against the key the index holds for it.
fn check_record(buf: &[u8], key: u64) -> Result<Entry, String> {
    if buf.len() < 8 {
        return Err("shorter than a record header".into());
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[8..];
    if len != body.len() {
        return Err(format!("length {len}, expected {}", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("CRC mismatch".into());
    }
    let entry = decode_entry(body).ok_or("not a message record")?;
    if entry.key != key {
        return Err(format!("holds key {}, expected {key}", entry.key));
    }
    Ok(entry)
}

/// What replaying one segment found.
#[derive(Debug, Default)]
struct Replayed {
    /// End of the last whole record: everything after it is a torn tail.
    valid_len: u64,
    file_len: u64,
    damaged_records: u64,
    damaged_bytes: u64,
    records_after_damage: u64,
}

/// A whole, well-formed record at `pos`: its body.
fn record_at(data: &[u8], pos: usize) -> Option<&[u8]> {
    let len = u32::from_le_bytes(data.get(pos..pos + 4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(data.get(pos + 4..pos + 8)?.try_into().ok()?);
    let body = data.get(pos + 8..pos + 8 + len)?;
    // Cheap checks first: most positions in a damaged stretch fail them
    // before the CRC is computed.
    let shaped = match body.first() {
        Some(&(KIND_ENTRY | KIND_RETAINED)) => decode_entry(body).is_some(),
        Some(&KIND_ACK) => body.len() == 9,
        _ => false,
    };
    (shaped && crc32fast::hash(body) == crc).then_some(body)
}

/// Replays one segment into `index`. A record that fails its checks starts
/// a damaged stretch, which ends at the next whole record (found by
/// scanning); only a stretch that reaches the end of the file is a torn tail.
fn replay(
    path: &Path,
    seg: u64,
    index: &mut BTreeMap<u64, Loc>,
    next_key: &mut u64,
) -> Result<Replayed, OutboxError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let mut found = Replayed {
        file_len: data.len() as u64,
        ..Replayed::default()
    };
    let mut pos = 0usize;
    let mut damaged = false;
    while pos < data.len() {
        let Some(body) = record_at(&data, pos) else {
            let Some(next) = (pos + 1..data.len()).find(|&p| record_at(&data, p).is_some()) else {
                break; // a torn tail
            };
            found.damaged_records += 1;
            found.damaged_bytes += (next - pos) as u64;
            damaged = true;
            pos = next;
            continue;
        };
        match body[0] {
            KIND_ENTRY | KIND_RETAINED => {
                if let Some(e) = decode_entry(body) {
                    index.insert(
                        e.key,
                        Loc {
                            segment: seg,
                            offset: pos as u64,
                            len: (8 + body.len()) as u32,
                        },
                    );
                    *next_key = (*next_key).max(e.key + 1);
                }
            }
            _ => {
                let key = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
                index.remove(&key);
                // A segment may hold only the acks of entries whose own
                // segment is gone: keys still never go back.
                *next_key = (*next_key).max(key + 1);
            }
        }
        if damaged {
            found.records_after_damage += 1;
        }
        pos += 8 + body.len();
        found.valid_len = pos as u64;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Outbox, Recovery) {
        Outbox::open(dir, 1 << 20).unwrap()
    }

    #[test]
    fn entries_survive_reopen_in_order_until_acked() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, rec) = open(dir.path());
        assert_eq!(rec, Recovery::default());
        for i in 0..5 {
            ob.append("t/a", format!("m{i}").as_bytes(), || true)
                .unwrap();
        }
        ob.ack(1).unwrap();
        ob.ack(3).unwrap();
        drop(ob);
        let (ob, rec) = open(dir.path());
        assert_eq!(rec.pending, 3);
        let got = ob.read_after(None, 10).unwrap();
        let keys: Vec<u64> = got.iter().map(|e| e.key).collect();
        assert_eq!(keys, vec![0, 2, 4]);
        assert_eq!(got[1].payload, b"m2");
        assert_eq!(got[1].topic, "t/a");
        assert_eq!(ob.read_after(Some(2), 10).unwrap()[0].key, 4);
        assert_eq!(
            ob.append("t/a", b"next", || true).unwrap(),
            5,
            "keys keep increasing"
        );
    }

    #[test]
    fn the_retain_flag_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (ob, _) = open(dir.path());
            ob.append("t/a", b"plain", || true).unwrap();
            ob.append_with("t/s", b"kept", true, || true).unwrap();
        }
        let (ob, rec) = open(dir.path());
        assert_eq!(rec.pending, 2);
        let got: Vec<(String, bool)> = ob
            .read_after(None, 10)
            .unwrap()
            .into_iter()
            .map(|e| (e.topic, e.retain))
            .collect();
        assert_eq!(got, [("t/a".into(), false), ("t/s".into(), true)]);
    }

    #[test]
    fn wear_counts_every_byte_written_and_one_sync_per_message() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = open(dir.path());
        let before = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        for i in 0..4 {
            ob.append("t/a", format!("message {i}").as_bytes(), || true)
                .unwrap();
        }
        ob.ack(1).unwrap();
        ob.ack(2).unwrap();
        let after = std::fs::metadata(segment_path(dir.path(), 1))
            .unwrap()
            .len();
        let wear = ob.wear();
        assert_eq!(wear.bytes, after - before);
        // Each message: 8 bytes of frame, 11 of header, topic, payload; each
        // ack: 8 + 9.
        assert_eq!(wear.bytes, 4 * (8 + 11 + 3 + 9) + 2 * (8 + 9));
        assert_eq!(wear.syncs, 4, "acks are not synced");
    }

    #[test]
    fn a_cut_tail_keeps_every_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = open(dir.path());
        for i in 0..10 {
            ob.append("t", format!("payload-{i}").as_bytes(), || true)
                .unwrap();
        }
        drop(ob);
        let seg = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 5).unwrap();
        drop(f);
        let (ob, rec) = open(dir.path());
        assert_eq!(
            rec.pending, 9,
            "the torn last record is dropped, the rest kept"
        );
        assert!(rec.truncated_bytes > 0);
        assert_eq!(
            ob.read_after(None, 100).unwrap().last().unwrap().payload,
            b"payload-8"
        );
        // Appending after recovery continues cleanly.
        ob.append("t", b"after", || true).unwrap();
        drop(ob);
        let (ob, rec) = open(dir.path());
        assert_eq!(rec.pending, 10);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(ob.read_after(Some(8), 10).unwrap()[0].payload, b"after");
    }

    #[test]
    fn garbage_at_the_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = open(dir.path());
        ob.append("t", b"one", || true).unwrap();
        drop(ob);
        let mut f = OpenOptions::new()
            .append(true)
            .open(segment_path(dir.path(), 1))
            .unwrap();
        f.write_all(&[0xAB; 37]).unwrap();
        drop(f);
        let (ob, rec) = open(dir.path());
        assert_eq!((rec.pending, rec.truncated_bytes), (1, 37));
        assert_eq!(ob.depth().0, 1);
    }

    #[test]
    fn full_outbox_waits_and_gives_up_only_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(dir.path(), 200).unwrap();
        ob.append("t", &[1; 100], || true).unwrap();
        let err = ob.append("t", &[2; 100], || false).unwrap_err();
        assert!(matches!(err, OutboxError::Full { .. }), "{err}");
        assert!(matches!(
            ob.append("t", &[0; 500], || true),
            Err(OutboxError::TooLarge { .. })
        ));
        let ob = std::sync::Arc::new(ob);
        let acker = {
            let ob = ob.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                ob.ack(0).unwrap();
            })
        };
        let started = std::time::Instant::now();
        assert_eq!(ob.append("t", &[3; 100], || true).unwrap(), 1);
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "waited for the ack"
        );
        acker.join().unwrap();
    }

    /// Arms a failure for the next record written: `written` bytes of it
    /// reach the file, then the write fails with ENOSPC.
    fn fail_next_write(ob: &Outbox, written: usize) {
        ob.lock().fault = Some(Fault { written });
    }

    #[test]
    fn an_append_retrying_after_a_failed_write_still_keeps_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        // Room for one 100-byte message.
        let (ob, _) = Outbox::open(dir.path(), 200).unwrap();
        let ob = std::sync::Arc::new(ob);
        fail_next_write(&ob, 10);
        let retrying = {
            let ob = ob.clone();
            std::thread::spawn(move || ob.append("t", &[1; 100], || true).unwrap())
        };
        // While it waits to try again, another append takes the room.
        std::thread::sleep(Duration::from_millis(30));
        let other = ob.append("t", &[2; 100], || false).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let (n, bytes) = ob.depth();
        assert_eq!((n, bytes <= 200), (1, true), "{n} messages, {bytes} bytes");
        ob.ack(other).unwrap();
        let key = retrying.join().unwrap();
        assert_eq!(payloads(&ob), vec![(key, vec![1; 100])]);
    }

    fn payloads(ob: &Outbox) -> Vec<(u64, Vec<u8>)> {
        ob.read_after(None, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.payload))
            .collect()
    }

    #[test]
    fn a_write_that_fails_halfway_leaves_no_torn_record_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = open(dir.path());
        ob.append("t", b"before", || true).unwrap();
        // The disk fills in the middle of a record and the caller gives up.
        fail_next_write(&ob, 13);
        let err = ob.append("t", b"lost-write", || false).unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        assert!(ob.write_trouble().is_some(), "the trouble is reported");
        // The caller waits instead: the retry writes it whole.
        fail_next_write(&ob, 30);
        let started = Instant::now();
        let key = ob.append("t", b"retried", || true).unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(90),
            "retried after a pause"
        );
        assert_eq!(ob.write_trouble(), None, "writing works again");
        ob.append("t", b"after", || true).unwrap();
        let want = vec![
            (0, b"before".to_vec()),
            (key, b"retried".to_vec()),
            (key + 1, b"after".to_vec()),
        ];
        assert_eq!(payloads(&ob), want);
        drop(ob);
        let (ob, rec) = open(dir.path());
        assert_eq!(
            (rec.pending, rec.truncated_bytes, rec.damaged_records),
            (3, 0, 0),
            "nothing torn was left in the segment"
        );
        assert_eq!(payloads(&ob), want);
    }

    /// A whole entry record as the outbox writes it.
    fn entry_record(key: u64, topic: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![KIND_ENTRY];
        body.extend_from_slice(&key.to_le_bytes());
        body.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        let mut record = (body.len() as u32).to_le_bytes().to_vec();
        record.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        record.extend_from_slice(&body);
        record
    }

    #[test]
    fn a_damaged_record_in_the_middle_is_skipped_not_used_to_cut_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // What older builds left after a full disk: part of a record (its
        // header promises 832 bytes), then whole records written after it.
        let torn = {
            let mut r = entry_record(1, "t", &[b'x'; 820]);
            r.truncate(200);
            r
        };
        let mut data = entry_record(0, "t", b"zero");
        data.extend_from_slice(&torn);
        data.extend_from_slice(&entry_record(1, "t", b"one"));
        data.extend_from_slice(&entry_record(2, "t", b"two"));
        std::fs::write(segment_path(dir.path(), 1), &data).unwrap();
        let (ob, rec) = open(dir.path());
        assert_eq!(rec.damaged_records, 1, "{rec:?}");
        assert_eq!(rec.damaged_bytes, 200);
        assert_eq!(rec.truncated_bytes, 0, "the records after it are kept");
        assert_eq!(
            payloads(&ob),
            vec![
                (0, b"zero".to_vec()),
                (1, b"one".to_vec()),
                (2, b"two".to_vec())
            ]
        );
        assert_eq!(ob.damaged(), 1);
        assert_eq!(ob.append("t", b"three", || true).unwrap(), 3);
        drop(ob);
        // Damage with nothing whole after it is a torn tail, cut as before.
        let seg = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&seg).unwrap();
        data.extend_from_slice(&torn);
        std::fs::write(&seg, &data).unwrap();
        let (ob, rec) = open(dir.path());
        assert_eq!((rec.truncated_bytes, rec.damaged_records), (200, 1));
        assert_eq!(ob.depth().0, 4);
    }

    #[test]
    fn reads_check_each_record_and_never_send_a_damaged_one() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = open(dir.path());
        for i in 0..3 {
            ob.append("t", format!("message-{i}").as_bytes(), || true)
                .unwrap();
        }
        // A bit flips in the middle message's payload on disk.
        let seg = segment_path(dir.path(), 1);
        let mut data = std::fs::read(&seg).unwrap();
        let at = data.windows(9).position(|w| w == b"message-1").unwrap();
        data[at + 3] ^= 0x20;
        std::fs::write(&seg, &data).unwrap();
        let got = payloads(&ob);
        assert_eq!(
            got,
            vec![(0, b"message-0".to_vec()), (2, b"message-2".to_vec())]
        );
        assert_eq!(ob.damaged(), 1);
        assert_eq!(ob.depth().0, 2, "the damaged one left the queue");
        assert_eq!(
            check_record(&data[..8], 0).unwrap_err(),
            "length 21, expected 0"
        );
    }

    #[test]
    fn fully_acked_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(dir.path(), 64 << 20).unwrap();
        let big = vec![9u8; 1 << 20];
        let keys: Vec<u64> = (0..10)
            .map(|_| ob.append("t", &big, || true).unwrap())
            .collect();
        let segs = || {
            std::fs::read_dir(dir.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
                .count()
        };
        assert!(segs() >= 2, "rotated past {SEGMENT_BYTES} bytes");
        for k in keys {
            ob.ack(k).unwrap();
        }
        assert_eq!(segs(), 1, "only the current segment is left");
        assert_eq!(ob.depth(), (0, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append a message of this many bytes.
        Append(usize),
        /// Ack the pending message at this position (mod the count).
        Ack(usize),
        /// The next append's write fails after this many bytes; the caller
        /// gives up (`retry` false) or waits and it is retried.
        FailedWrite { written: usize, retry: bool },
        /// Close and reopen.
        Restart,
        /// A crash mid-write: part of a record at the end of the current
        /// segment, then reopen.
        TornTail(usize),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1usize..3000).prop_map(Op::Append),
            3 => any::<usize>().prop_map(Op::Ack),
            1 => (0usize..200, any::<bool>()).prop_map(|(written, retry)| Op::FailedWrite { written, retry }),
            1 => Just(Op::Restart),
            1 => (1usize..120).prop_map(Op::TornTail),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Whatever happens, the outbox holds exactly what was appended and
        /// not acked: nothing acknowledged reappears, nothing whole is lost,
        /// and every payload reads back as written.
        #[test]
        fn outbox_keeps_exactly_the_unacked_messages(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let (mut ob, _) = Outbox::open(dir.path(), 1 << 22).unwrap();
            let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut seq = 0u64;
            let mut highest: Option<u64> = None;
            for op in ops {
                match op {
                    Op::Append(n) => {
                        seq += 1;
                        let payload: Vec<u8> = (0..n).map(|i| (i as u64 ^ seq) as u8).collect();
                        let key = ob.append("t/p", &payload, || true).unwrap();
                        proptest::prop_assert!(highest.is_none_or(|h| key > h), "keys increase");
                        highest = Some(key);
                        model.insert(key, payload);
                    }
                    Op::Ack(i) => {
                        if let Some(&key) = model.keys().nth(i % model.len().max(1)) {
                            ob.ack(key).unwrap();
                            model.remove(&key);
                        }
                    }
                    Op::FailedWrite { written, retry } => {
                        seq += 1;
                        fail_next_write(&ob, written);
                        let payload = vec![seq as u8; 64];
                        match ob.append("t/p", &payload, || retry) {
                            Ok(key) => {
                                proptest::prop_assert!(retry);
                                highest = Some(key);
                                model.insert(key, payload);
                            }
                            Err(_) => proptest::prop_assert!(!retry),
                        }
                    }
                    Op::Restart => {
                        drop(ob);
                        ob = Outbox::open(dir.path(), 1 << 22).unwrap().0;
                    }
                    Op::TornTail(n) => {
                        let segment = ob.lock().segment;
                        drop(ob);
                        let mut f = OpenOptions::new()
                            .append(true)
                            .open(segment_path(dir.path(), segment))
                            .unwrap();
                        let partial = entry_record(u64::MAX / 2, "t/p", &[7; 100]);
                        f.write_all(&partial[..n.min(partial.len() - 1)]).unwrap();
                        drop(f);
                        let (o, rec) = Outbox::open(dir.path(), 1 << 22).unwrap();
                        proptest::prop_assert_eq!(rec.damaged_records, 0);
                        ob = o;
                    }
                }
                let got: BTreeMap<u64, Vec<u8>> = payloads(&ob).into_iter().collect();
                proptest::prop_assert_eq!(&got, &model);
                proptest::prop_assert_eq!(ob.depth().0, model.len());
                proptest::prop_assert_eq!(ob.damaged(), 0);
            }
            drop(ob);
            let (ob, rec) = Outbox::open(dir.path(), 1 << 22).unwrap();
            proptest::prop_assert_eq!(rec.pending, model.len());
            let got: BTreeMap<u64, Vec<u8>> = payloads(&ob).into_iter().collect();
            proptest::prop_assert_eq!(got, model);
        }
    }
}
