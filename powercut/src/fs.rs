//! The FUSE side: each request checked against the live image and recorded
//! in the state, so a cut can tell what was durable.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::image::{Body, Data, Ino, Meta, Node};
use crate::state::State;

/// No caching in the kernel: every lookup and stat asks the live image.
const TTL: Duration = Duration::ZERO;

/// What the mount and its handle share.
pub struct Shared {
    /// The filesystem's state.
    pub state: Mutex<State>,
    /// The process that mounted it: its requests are not counted and still
    /// served after the power is gone, so the test can look around.
    pub owner: u32,
    /// Thread id → process id, learnt from /proc.
    pub tgids: Mutex<HashMap<u32, u32>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_owner(&self, tid: u32) -> bool {
        if tid == self.owner {
            return true;
        }
        let mut cache = self.tgids.lock().unwrap_or_else(|p| p.into_inner());
        let tgid = *cache
            .entry(tid)
            .or_insert_with(|| tgid_of(tid).unwrap_or(0));
        tgid == self.owner
    }
}

fn tgid_of(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The inode `name` in directory `parent` names.
fn entry(image: &crate::image::Image, parent: Ino, name: &OsStr) -> Result<Ino, Errno> {
    image
        .entries(parent)
        .ok_or(Errno::ENOTDIR)?
        .get(name)
        .copied()
        .ok_or(Errno::ENOENT)
}

/// Whether an entry holding `body` may be removed (or replaced) by an
/// operation on a directory (`dir`) or a file.
fn may_go(body: &Body, dir: bool) -> Result<(), Errno> {
    match (body, dir) {
        (Body::Dir(e), true) if !e.is_empty() => Err(Errno::ENOTEMPTY),
        (Body::Dir(_), false) => Err(Errno::EISDIR),
        (Body::File(_) | Body::Symlink(_), true) => Err(Errno::ENOTDIR),
        _ => Ok(()),
    }
}

/// Replies with a new entry, or the error.
fn answer_entry(reply: ReplyEntry, made: Result<FileAttr, Errno>) {
    match made {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(e) => reply.error(e),
    }
}

/// Replies ok, or the error.
fn answer_empty(reply: ReplyEmpty, done: Result<(), Errno>) {
    match done {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

/// Permission bits of a new inode.
fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

/// The filesystem fuser serves.
pub struct PowerCutFs {
    /// Shared with the test's handle.
    pub shared: Arc<Shared>,
    uid: u32,
    gid: u32,
}

impl PowerCutFs {
    /// Serves `shared`'s state.
    pub fn new(shared: Arc<Shared>) -> PowerCutFs {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        PowerCutFs { shared, uid, gid }
    }

    /// The state, if this request may go on: after the cut only the
    /// owner's requests are served. A change counts towards the trigger,
    /// and the change that reaches it is the first one lost.
    fn enter(&self, req: &Request, changes: bool) -> Result<MutexGuard<'_, State>, Errno> {
        let owner = self.shared.is_owner(req.pid());
        let mut st = self.shared.lock();
        if owner {
            return Ok(st);
        }
        if st.tripped {
            return Err(Errno::EIO);
        }
        if changes {
            st.counts.ops += 1;
            if st.trigger.is_some_and(|t| st.counts.ops >= t) {
                st.tripped = true;
                return Err(Errno::EIO);
            }
        }
        Ok(st)
    }

    fn attr(&self, ino: Ino, node: &Node) -> FileAttr {
        let (kind, size, nlink) = match &node.body {
            Body::File(b) => (FileType::RegularFile, b.len() as u64, 1),
            Body::Dir(e) => (FileType::Directory, 4096, 2 + e.len() as u32),
            Body::Symlink(t) => (FileType::Symlink, t.as_os_str().len() as u64, 1),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind,
            perm: node.perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Makes a new inode named `name` in `parent`.
    fn make(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        body: Body,
        perm: u16,
    ) -> Result<FileAttr, Errno> {
        let mut st = self.enter(req, true)?;
        let entries = st.live.entries(parent.0).ok_or(Errno::ENOTDIR)?;
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = st.next_ino;
        st.next_ino += 1;
        let node = Node::new(body, perm);
        let attr = self.attr(ino, &node);
        st.meta(Meta::Create {
            parent: parent.0,
            name: name.to_owned(),
            ino,
            node,
        });
        Ok(attr)
    }

    fn remove(&self, req: &Request, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut st = self.enter(req, true)?;
        let ino = entry(&st.live, parent.0, name)?;
        may_go(&st.live.nodes[&ino].body, dir)?;
        st.meta(Meta::Remove {
            parent: parent.0,
            name: name.to_owned(),
        });
        Ok(())
    }

    fn do_setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        size: Option<u64>,
        mtime: Option<TimeOrNow>,
    ) -> Result<FileAttr, Errno> {
        let mut st = self.enter(req, true)?;
        if !st.live.nodes.contains_key(&ino.0) {
            return Err(Errno::ENOENT);
        }
        if let Some(size) = size {
            if !matches!(st.live.nodes[&ino.0].body, Body::File(_)) {
                return Err(Errno::EISDIR);
            }
            st.data(ino.0, Data::SetLen(size));
        }
        let node = st.live.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
        let now = SystemTime::now();
        if let Some(mode) = mode {
            node.perm = (mode & 0o7777) as u16;
        }
        match mtime {
            Some(TimeOrNow::SpecificTime(t)) => node.mtime = t,
            Some(TimeOrNow::Now) => node.mtime = now,
            None if size.is_some() => node.mtime = now,
            None => {}
        }
        node.ctime = now;
        Ok(self.attr(ino.0, node))
    }

    fn do_rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return Err(Errno::EINVAL);
        }
        let mut st = self.enter(req, true)?;
        let from = entry(&st.live, parent.0, name)?;
        let target = st
            .live
            .entries(newparent.0)
            .ok_or(Errno::ENOTDIR)?
            .get(newname)
            .copied();
        if let Some(to) = target {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if to == from {
                return Ok(());
            }
            let from_dir = matches!(st.live.nodes[&from].body, Body::Dir(_));
            may_go(&st.live.nodes[&to].body, from_dir)?;
        }
        st.meta(Meta::Rename {
            parent: parent.0,
            name: name.to_owned(),
            newparent: newparent.0,
            newname: newname.to_owned(),
        });
        Ok(())
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.enter(req, false).and_then(|st| {
            let ino = entry(&st.live, parent.0, name)?;
            Ok(self.attr(ino, &st.live.nodes[&ino]))
        });
        match found {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let found = self.enter(req, false).and_then(|st| {
            let node = st.live.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
            Ok(self.attr(ino.0, node))
        });
        match found {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.do_setattr(req, ino, mode, size, mtime) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let found = self.enter(req, false).and_then(|st| {
            match &st.live.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.body {
                Body::Symlink(t) => Ok(t.as_os_str().as_encoded_bytes().to_vec()),
                _ => Err(Errno::EINVAL),
            }
        });
        match found {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Only what the daemon writes: regular files.
            return reply.error(Errno::EPERM);
        }
        answer_entry(
            reply,
            self.make(req, parent, name, Body::File(Vec::new()), perm(mode, umask)),
        );
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        answer_entry(
            reply,
            self.make(
                req,
                parent,
                name,
                Body::Dir(Default::default()),
                perm(mode, umask),
            ),
        );
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer_empty(reply, self.remove(req, parent, name, false))
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        answer_empty(reply, self.remove(req, parent, name, true))
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        answer_entry(
            reply,
            self.make(
                req,
                parent,
                link_name,
                Body::Symlink(target.to_path_buf()),
                0o777,
            ),
        );
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        answer_empty(
            reply,
            self.do_rename(req, parent, name, newparent, newname, flags),
        )
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let linked = self.enter(req, true).and_then(|mut st| {
            let node = st.live.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
            if matches!(node.body, Body::Dir(_)) {
                return Err(Errno::EPERM);
            }
            if st
                .live
                .entries(newparent.0)
                .ok_or(Errno::ENOTDIR)?
                .contains_key(newname)
            {
                return Err(Errno::EEXIST);
            }
            st.meta(Meta::Link {
                parent: newparent.0,
                name: newname.to_owned(),
                ino: ino.0,
            });
            Ok(self.attr(ino.0, &st.live.nodes[&ino.0]))
        });
        match linked {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self
            .enter(req, false)
            .map(|st| st.live.nodes.contains_key(&ino.0))
        {
            Ok(true) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(false) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let found = self.enter(req, false).and_then(|st| {
            match &st.live.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.body {
                Body::File(b) => {
                    let start = (offset as usize).min(b.len());
                    let end = (start + size as usize).min(b.len());
                    Ok(b[start..end].to_vec())
                }
                _ => Err(Errno::EISDIR),
            }
        });
        match found {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.enter(req, true).and_then(|mut st| {
            if !matches!(
                st.live.nodes.get(&ino.0).ok_or(Errno::ENOENT)?.body,
                Body::File(_)
            ) {
                return Err(Errno::EISDIR);
            }
            st.data(
                ino.0,
                Data::Write {
                    offset,
                    bytes: data.to_vec(),
                },
            );
            if let Some(n) = st.live.nodes.get_mut(&ino.0) {
                n.mtime = SystemTime::now();
                n.ctime = n.mtime;
            }
            Ok(data.len() as u32)
        });
        match written {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close() makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.enter(req, true) {
            Ok(mut st) => {
                st.sync_file(ino.0);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listed = self.enter(req, false).and_then(|st| {
            let entries = st.live.entries(ino.0).ok_or(Errno::ENOTDIR)?;
            let mut all = vec![(ino.0, FileType::Directory, OsStr::new(".").to_owned())];
            all.push((ino.0, FileType::Directory, OsStr::new("..").to_owned()));
            for (name, child) in entries {
                let kind = match st.live.nodes[child].body {
                    Body::File(_) => FileType::RegularFile,
                    Body::Dir(_) => FileType::Directory,
                    Body::Symlink(_) => FileType::Symlink,
                };
                all.push((*child, kind, name.clone()));
            }
            Ok(all)
        });
        match listed {
            Ok(all) => {
                for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.enter(req, true) {
            Ok(mut st) => {
                st.sync_dir();
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // A roomy disk: nothing here is about space.
        reply.statfs(1 << 24, 1 << 23, 1 << 23, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.make(req, parent, name, Body::File(Vec::new()), perm(mode, umask)) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}
