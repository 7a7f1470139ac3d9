//! Durable outbox: every message is on disk (fsynced) before its frame counts
//! as processed, and leaves only when the broker acknowledged it.
//!
//! A segmented append-only log, written by hand because the embedded stores
//! tried (redb 4.6) refuse to open a file whose tail was cut off, while an
//! edge box must come back from power loss with everything that was whole.
//! Each record is `len u32 | crc32 u32 | body`; a torn or corrupt tail is
//! truncated at start-up. Entries are synced; acknowledgements are not (a
//! lost ack only means a duplicate, which the message id lets consumers drop).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;
const KIND_ENTRY: u8 = 1;
const KIND_ACK: u8 = 2;

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
}

/// One queued message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the queue; increasing.
    pub key: u64,
    /// MQTT topic.
    pub topic: String,
    /// Message body.
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    segment: u64,
    offset: u64,
    len: u32,
}

struct Inner {
    writer: File,
    segment: u64,
    segment_len: u64,
    index: BTreeMap<u64, Loc>,
    live: HashMap<u64, usize>,
    next_key: u64,
    bytes: u64,
}

/// What start-up recovery found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Unacknowledged messages carried over.
    pub pending: usize,
    /// Bytes cut from torn or corrupt segment tails.
    pub truncated_bytes: u64,
}

/// The durable queue. Safe to share between threads.
pub struct Outbox {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
    space: Condvar,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |err| OutboxError::Io {
        path: path.to_path_buf(),
        err,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.log"))
}

impl Outbox {
    /// Opens (creating) the outbox in `dir`, replaying every segment and
    /// cutting any torn tail.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Outbox, Recovery), OutboxError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
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
            let (valid_len, file_len) = replay(&path, seg, &mut index, &mut next_key)?;
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
                max_bytes,
                inner: Mutex::new(Inner {
                    writer,
                    segment,
                    segment_len,
                    index,
                    live,
                    next_key,
                    bytes,
                }),
                space: Condvar::new(),
            },
            recovery,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a message and syncs it to disk. While the outbox is full it
    /// waits for acknowledgements to free space, as long as `keep_waiting`
    /// says so; detections are never dropped to make room.
    pub fn append(
        &self,
        topic: &str,
        payload: &[u8],
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
        let mut warned = false;
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
        let key = inner.next_key;
        body.push(KIND_ENTRY);
        body.extend_from_slice(&key.to_le_bytes());
        body.extend_from_slice(&(topic.len() as u16).to_le_bytes());
        body.extend_from_slice(topic.as_bytes());
        body.extend_from_slice(payload);
        let loc = self.write_record(&mut inner, &body, true)?;
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
            file.read_exact(&mut buf).map_err(io_err(&path))?;
            if let Some(entry) = decode_entry(&buf[8..]) {
                debug_assert_eq!(entry.key, key);
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// (messages, bytes) waiting for acknowledgement.
    pub fn depth(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.index.len(), inner.bytes)
    }

    fn write_record(&self, inner: &mut Inner, body: &[u8], sync: bool) -> Result<Loc, OutboxError> {
        if inner.segment_len >= SEGMENT_BYTES {
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
        }
        let mut record = Vec::with_capacity(8 + body.len());
        record.extend_from_slice(&(body.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
        record.extend_from_slice(body);
        let path = segment_path(&self.dir, inner.segment);
        inner.writer.write_all(&record).map_err(io_err(&path))?;
        if sync {
            inner.writer.sync_data().map_err(io_err(&path))?;
        }
        let loc = Loc {
            segment: inner.segment,
            offset: inner.segment_len,
            len: record.len() as u32,
        };
        inner.segment_len += record.len() as u64;
        Ok(loc)
    }
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

fn decode_entry(body: &[u8]) -> Option<Entry> {
    if body.len() < 11 || body[0] != KIND_ENTRY {
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
    })
}

/// Replays one segment into `index`; returns (length of whole records, file length).
fn replay(
    path: &Path,
    seg: u64,
    index: &mut BTreeMap<u64, Loc>,
    next_key: &mut u64,
) -> Result<(u64, u64), OutboxError> {
    let data = std::fs::read(path).map_err(io_err(path))?;
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        let Some(body) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if len == 0 || crc32fast::hash(body) != crc {
            break;
        }
        match body[0] {
            KIND_ENTRY => {
                if let Some(e) = decode_entry(body) {
                    index.insert(
                        e.key,
                        Loc {
                            segment: seg,
                            offset: pos as u64,
                            len: (8 + len) as u32,
                        },
                    );
                    *next_key = (*next_key).max(e.key + 1);
                }
            }
            KIND_ACK if body.len() == 9 => {
                let key = u64::from_le_bytes(body[1..9].try_into().expect("8 bytes"));
                index.remove(&key);
            }
            _ => break,
        }
        pos += 8 + len;
    }
    Ok((pos as u64, data.len() as u64))
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

    #[test]
    fn fully_acked_segments_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (ob, _) = Outbox::open(dir.path(), 64 << 20).unwrap();
        let big = vec![9u8; 1 << 20];
        let keys: Vec<u64> = (0..10)
            .map(|_| ob.append("t", &big, || true).unwrap())
            .collect();
        let segs = || std::fs::read_dir(dir.path()).unwrap().count();
        assert!(segs() >= 2, "rotated past {SEGMENT_BYTES} bytes");
        for k in keys {
            ob.ack(k).unwrap();
        }
        assert_eq!(segs(), 1, "only the current segment is left");
        assert_eq!(ob.depth(), (0, 0));
    }
}
