//! What the filesystem knows: the live image processes see, the disk image
//! a power cut falls back to, and what separates them (the journal of
//! namespace changes and each file's unsynced writes).

use std::collections::HashMap;
use std::fmt;

use crate::image::{Data, Image, Ino, Meta};

/// How a cut decides what of the unsynced state reached the disk anyway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Nothing unsynced survives (LazyFS's `clear-cache`).
    Forget,
    /// The background flush got part way: a prefix of the journal and of
    /// each file's writes, the last write kept possibly torn.
    Prefix,
    /// Pages went out in any order: a prefix of the journal, and each
    /// unsynced write kept or lost on its own, some torn.
    Scatter,
}

/// What a cut kept, for the test's log.
#[derive(Clone, Debug)]
pub struct CutReport {
    /// The seed it drew from.
    pub seed: u64,
    /// How it chose.
    pub mode: CutMode,
    /// Namespace changes kept, of those not yet durable.
    pub journal_kept: usize,
    /// Namespace changes not yet durable.
    pub journal_pending: usize,
    /// File writes kept, of those not yet synced.
    pub writes_kept: usize,
    /// File writes not yet synced.
    pub writes_pending: usize,
    /// Writes kept only in part.
    pub torn: usize,
}

impl fmt::Display for CutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} {:?}: kept {}/{} namespace change(s), {}/{} unsynced write(s) ({} torn)",
            self.seed,
            self.mode,
            self.journal_kept,
            self.journal_pending,
            self.writes_kept,
            self.writes_pending,
            self.torn
        )
    }
}

/// Counts of what reached the filesystem, for tests and logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Changes from processes other than the test's own.
    pub ops: u64,
    /// fsync/fdatasync of files.
    pub fsyncs: u64,
    /// fsync of directories.
    pub dir_syncs: u64,
}

/// The filesystem's whole state.
pub struct State {
    /// What processes see.
    pub live: Image,
    /// What a cut falls back to.
    pub disk: Image,
    /// Namespace changes not yet durable, oldest first.
    pub journal: Vec<Meta>,
    /// Each file's writes since its last fsync, oldest first.
    pub dirty: HashMap<Ino, Vec<Data>>,
    /// Next inode number to hand out.
    pub next_ino: Ino,
    /// Counts so far.
    pub counts: Counts,
    /// The power goes at this many counted operations.
    pub trigger: Option<u64>,
    /// The power is gone: other processes get EIO from here on.
    pub tripped: bool,
}

impl State {
    /// Starts from what a disk holds; the live view equals it.
    pub fn from_disk(mut disk: Image) -> State {
        disk.collect_garbage();
        let next_ino = disk.nodes.keys().max().copied().unwrap_or(1) + 1;
        State {
            live: disk.clone(),
            disk,
            journal: Vec::new(),
            dirty: HashMap::new(),
            next_ino,
            counts: Counts::default(),
            trigger: None,
            tripped: false,
        }
    }

    /// Records a namespace change (already checked against the live tree).
    pub fn meta(&mut self, op: Meta) {
        self.live.apply_meta(&op);
        self.journal.push(op);
    }

    /// Records a change to a file's bytes.
    pub fn data(&mut self, ino: Ino, op: Data) {
        self.live.apply_data(ino, &op);
        self.dirty.entry(ino).or_default().push(op);
    }

    /// fsync/fdatasync of a file: its bytes and attributes reach the disk.
    /// Its name does not (that takes an fsync of the directory), which is
    /// stricter than ext4, where the commit carries the whole journal.
    pub fn sync_file(&mut self, ino: Ino) {
        self.counts.fsyncs += 1;
        for op in self.dirty.remove(&ino).unwrap_or_default() {
            self.disk.apply_data(ino, &op);
        }
        if let (Some(live), Some(disk)) = (self.live.nodes.get(&ino), self.disk.nodes.get_mut(&ino))
        {
            disk.perm = live.perm;
            disk.mtime = live.mtime;
            disk.ctime = live.ctime;
        }
    }

    /// fsync of a directory: commits the journal, all of it, as a journaling
    /// filesystem's commit does.
    pub fn sync_dir(&mut self) {
        self.counts.dir_syncs += 1;
        for op in std::mem::take(&mut self.journal) {
            self.disk.apply_meta(&op);
        }
    }

    /// The power cut: decides by `seed` (and in `mode`, or one the seed
    /// draws) what of the unsynced state reached the disk, and returns that
    /// disk.
    pub fn cut(&mut self, seed: u64, mode: Option<CutMode>) -> (Image, CutReport) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let drawn = match rng.u8(0..3) {
            0 => CutMode::Forget,
            1 => CutMode::Prefix,
            _ => CutMode::Scatter,
        };
        let mode = mode.unwrap_or(drawn);
        let mut disk = self.disk.clone();
        let journal = std::mem::take(&mut self.journal);
        let journal_kept = match mode {
            CutMode::Forget => 0,
            _ => rng.usize(0..=journal.len()),
        };
        for op in &journal[..journal_kept] {
            disk.apply_meta(op);
        }
        let mut report = CutReport {
            seed,
            mode,
            journal_kept,
            journal_pending: journal.len(),
            writes_kept: 0,
            writes_pending: 0,
            torn: 0,
        };
        // Files in a fixed order, so a seed always means the same choices.
        let mut dirty: Vec<(Ino, Vec<Data>)> =
            std::mem::take(&mut self.dirty).into_iter().collect();
        dirty.sort_by_key(|(ino, _)| *ino);
        for (ino, ops) in dirty {
            report.writes_pending += ops.len();
            let kept: Vec<Data> = match mode {
                CutMode::Forget => Vec::new(),
                CutMode::Prefix => {
                    let n = rng.usize(0..=ops.len());
                    let mut kept = ops[..n].to_vec();
                    if n < ops.len() && rng.bool() {
                        kept.push(tear(&ops[n], &mut rng, &mut report));
                    }
                    kept
                }
                CutMode::Scatter => {
                    let mut kept = Vec::new();
                    for op in &ops {
                        if !rng.bool() {
                            continue;
                        }
                        if rng.u8(0..4) == 0 {
                            kept.push(tear(op, &mut rng, &mut report));
                        } else {
                            kept.push(op.clone());
                        }
                    }
                    kept
                }
            };
            report.writes_kept += kept.len();
            for op in &kept {
                disk.apply_data(ino, op);
            }
        }
        (disk, report)
    }
}

fn tear(op: &Data, rng: &mut fastrand::Rng, report: &mut CutReport) -> Data {
    match op {
        Data::Write { bytes, .. } if bytes.len() > 1 => {
            report.torn += 1;
            op.torn(rng.usize(1..bytes.len()))
        }
        _ => op.clone(),
    }
}
