//! A test tool: a FUSE filesystem that behaves like a disk behind a page
//! cache, and can lose power.
//!
//! Everything lives in memory, twice: the *live* image that processes read
//! and write, and the *disk* image that a power cut falls back to. What
//! moves data from one to the other is what moves it on a real disk:
//!
//! - `fsync`/`fdatasync` of a file makes its bytes, length, mode and times
//!   durable, and nothing else;
//! - `fsync` of a directory commits the namespace journal: every create,
//!   mkdir, unlink, rmdir, rename and link so far, in order, as a
//!   journaling filesystem's commit does;
//! - at a cut, what was not yet durable is lost, or, by the seed, partly
//!   kept: a prefix of the journal (a background commit), and a prefix or
//!   a random subset of each file's unsynced writes, some torn part way
//!   (pages written back before the power went).
//!
//! A file that was fsynced but whose directory never was loses its name at
//! a cut: stricter than ext4, where a file's commit carries the journal,
//! and what POSIX promises.
//!
//! Not modelled: reordering within the journal; lost or reordered *synced*
//! writes (a disk that lies about its cache); xattrs and hard-link counts;
//! special files (FIFOs, devices); space running out (`tests/it/disk_full.rs`
//! does that on a tmpfs).
//!
//! Requests from the process that mounted it are served even after the
//! cut and never counted, so a test can look at the live tree while the
//! daemon under test is frozen out with EIO.

mod fs;
mod image;
mod state;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use state::{Counts, CutMode, CutReport};

/// What the disk holds between mounts.
#[derive(Clone, Debug, Default)]
pub struct Disk(image::Image);

/// A mounted power-cut filesystem. Dropping it unmounts (as a clean
/// shutdown: nothing is lost).
pub struct Mount {
    path: PathBuf,
    shared: Arc<fs::Shared>,
    session: Option<fuser::BackgroundSession>,
}

/// Mounts `disk` at `at` (an empty directory). Needs root, or a user
/// allowed to open `/dev/fuse` and mount.
pub fn mount(at: &Path, disk: Disk) -> io::Result<Mount> {
    let shared = Arc::new(fs::Shared {
        state: Mutex::new(state::State::from_disk(disk.0)),
        owner: std::process::id(),
        tgids: Mutex::new(HashMap::new()),
    });
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("powercut".into()),
        fuser::MountOption::Subtype("powercut".into()),
    ];
    let session =
        fuser::spawn_mount(fs::PowerCutFs::new(shared.clone()), at, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot mount the power-cut filesystem at {}: {e} (needs root and /dev/fuse)",
                    at.display()
                ),
            )
        })?;
    Ok(Mount {
        path: at.to_path_buf(),
        shared,
        session: Some(session),
    })
}

impl Mount {
    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The power goes at the `n`th change (write, truncate, create, rename,
    /// unlink, fsync …) other processes make from now on; that change and
    /// everything after it fail with EIO.
    pub fn arm(&self, n: u64) {
        let mut st = self.shared.state.lock().unwrap();
        st.trigger = Some(st.counts.ops + n.max(1));
    }

    /// Whether the power has gone (the trigger was reached).
    pub fn tripped(&self) -> bool {
        self.shared.state.lock().unwrap().tripped
    }

    /// What reached it so far.
    pub fn counts(&self) -> Counts {
        self.shared.state.lock().unwrap().counts
    }

    /// Cuts the power now (if the trigger has not already), decides by
    /// `seed` what of the unsynced state survived, and unmounts. Stop the
    /// processes using it first (kill -9 is the point).
    pub fn cut(self, seed: u64) -> (Disk, CutReport) {
        self.cut_as(seed, None)
    }

    /// [`Mount::cut`] in a given mode (`None`: the seed draws one).
    pub fn cut_as(mut self, seed: u64, mode: Option<CutMode>) -> (Disk, CutReport) {
        let (disk, report) = {
            let mut st = self.shared.state.lock().unwrap();
            st.tripped = true;
            st.cut(seed, mode)
        };
        self.unmount();
        (Disk(disk), report)
    }

    /// A clean unmount: everything written is kept, as `sync` and
    /// `umount` would.
    pub fn shut_down(mut self) -> Disk {
        let disk = {
            let mut st = self.shared.state.lock().unwrap();
            st.tripped = true;
            st.live.clone()
        };
        self.unmount();
        Disk(disk)
    }

    fn unmount(&mut self) {
        if let Some(session) = self.session.take() {
            // Detached first: a dead process's last release must not make
            // the unmount fail with EBUSY.
            if let Ok(c) = std::ffi::CString::new(self.path.as_os_str().as_encoded_bytes()) {
                // SAFETY: a valid NUL-terminated path; umount2 only reads it.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = session.umount_and_join();
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.unmount();
    }
}
