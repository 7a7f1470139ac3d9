//! One picture of a filesystem's tree and contents, and the operations that
//! change it. The live filesystem and the disk are both an [`Image`]; the
//! disk only gets the operations that were made durable.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::SystemTime;

/// Inode number, as FUSE sees it.
pub type Ino = u64;
/// The root directory's inode (FUSE's fixed number).
pub const ROOT: Ino = 1;

/// What an inode holds.
#[derive(Clone, Debug)]
pub enum Body {
    /// A regular file's bytes.
    File(Vec<u8>),
    /// A directory's entries.
    Dir(BTreeMap<OsString, Ino>),
    /// A symbolic link's target.
    Symlink(PathBuf),
}

/// One inode.
#[derive(Clone, Debug)]
pub struct Node {
    /// Contents.
    pub body: Body,
    /// Permission bits.
    pub perm: u16,
    /// Last modification.
    pub mtime: SystemTime,
    /// Last change of the inode.
    pub ctime: SystemTime,
}

impl Node {
    /// A new inode with `body`, stamped now.
    pub fn new(body: Body, perm: u16) -> Node {
        let now = SystemTime::now();
        Node {
            body,
            perm,
            mtime: now,
            ctime: now,
        }
    }
}

/// A change to the namespace: journaled in order, durable when a directory
/// is fsynced.
#[derive(Clone, Debug)]
pub enum Meta {
    /// A new file, directory or link (`node` as it was created, empty).
    Create {
        /// Directory.
        parent: Ino,
        /// Entry name.
        name: OsString,
        /// The new inode.
        ino: Ino,
        /// Its first state.
        node: Node,
    },
    /// A second name for an inode.
    Link {
        /// Directory.
        parent: Ino,
        /// Entry name.
        name: OsString,
        /// Existing inode.
        ino: Ino,
    },
    /// An entry removed (unlink or rmdir).
    Remove {
        /// Directory.
        parent: Ino,
        /// Entry name.
        name: OsString,
    },
    /// An entry moved, replacing what the target name held.
    Rename {
        /// Old directory.
        parent: Ino,
        /// Old name.
        name: OsString,
        /// New directory.
        newparent: Ino,
        /// New name.
        newname: OsString,
    },
}

/// A change to one file's bytes: durable when the file is fsynced.
#[derive(Clone, Debug)]
pub enum Data {
    /// `bytes` written at `offset`.
    Write {
        /// Where.
        offset: u64,
        /// What.
        bytes: Vec<u8>,
    },
    /// Truncated or extended to a length.
    SetLen(u64),
}

impl Data {
    /// The same write cut to its first `keep` bytes (a torn write).
    pub fn torn(&self, keep: usize) -> Data {
        match self {
            Data::Write { offset, bytes } => Data::Write {
                offset: *offset,
                bytes: bytes[..keep.min(bytes.len())].to_vec(),
            },
            other => other.clone(),
        }
    }
}

/// Inodes by number; [`ROOT`] is always there.
#[derive(Clone, Debug)]
pub struct Image {
    /// Every inode, linked or not.
    pub nodes: HashMap<Ino, Node>,
}

impl Default for Image {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::new(Body::Dir(BTreeMap::new()), 0o755));
        Image { nodes }
    }
}

impl Image {
    /// The directory `ino`'s entries, if it is one.
    pub fn entries(&self, ino: Ino) -> Option<&BTreeMap<OsString, Ino>> {
        match &self.nodes.get(&ino)?.body {
            Body::Dir(e) => Some(e),
            _ => None,
        }
    }

    fn entries_mut(&mut self, ino: Ino) -> Option<&mut BTreeMap<OsString, Ino>> {
        match &mut self.nodes.get_mut(&ino)?.body {
            Body::Dir(e) => Some(e),
            _ => None,
        }
    }

    /// Applies a namespace change. The live filesystem checks an operation
    /// before journaling it, so on the disk, where the journal is replayed
    /// in order, it meets the same tree and cannot fail.
    pub fn apply_meta(&mut self, op: &Meta) {
        let now = SystemTime::now();
        match op {
            Meta::Create {
                parent,
                name,
                ino,
                node,
            } => {
                // Its data may have been fsynced before its name was.
                self.nodes.entry(*ino).or_insert_with(|| node.clone());
                if let Some(e) = self.entries_mut(*parent) {
                    e.insert(name.clone(), *ino);
                }
            }
            Meta::Link { parent, name, ino } => {
                if let Some(e) = self.entries_mut(*parent) {
                    e.insert(name.clone(), *ino);
                }
            }
            Meta::Remove { parent, name } => {
                if let Some(e) = self.entries_mut(*parent) {
                    e.remove(name);
                }
            }
            Meta::Rename {
                parent,
                name,
                newparent,
                newname,
            } => {
                let Some(ino) = self.entries_mut(*parent).and_then(|e| e.remove(name)) else {
                    return;
                };
                if let Some(e) = self.entries_mut(*newparent) {
                    e.insert(newname.clone(), ino);
                }
                if let Some(n) = self.nodes.get_mut(&ino) {
                    n.ctime = now;
                }
            }
        }
        for dir in touched(op) {
            if let Some(n) = self.nodes.get_mut(&dir) {
                n.mtime = now;
                n.ctime = now;
            }
        }
    }

    /// Applies a change to a file's bytes (creating the inode on the disk
    /// if its creation is not durable yet).
    pub fn apply_data(&mut self, ino: Ino, op: &Data) {
        let node = self
            .nodes
            .entry(ino)
            .or_insert_with(|| Node::new(Body::File(Vec::new()), 0o644));
        let Body::File(bytes) = &mut node.body else {
            return;
        };
        match op {
            Data::Write { offset, bytes: new } => {
                let start = *offset as usize;
                let end = start + new.len();
                if bytes.len() < end {
                    bytes.resize(end, 0);
                }
                bytes[start..end].copy_from_slice(new);
            }
            Data::SetLen(len) => bytes.resize(*len as usize, 0),
        }
    }

    /// Drops inodes no directory reaches (what `fsck` would reclaim after
    /// a cut).
    pub fn collect_garbage(&mut self) {
        let mut seen = HashSet::from([ROOT]);
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if let Some(e) = self.entries(ino) {
                for child in e.values() {
                    if seen.insert(*child) {
                        todo.push(*child);
                    }
                }
            }
        }
        self.nodes.retain(|ino, _| seen.contains(ino));
    }
}

fn touched(op: &Meta) -> Vec<Ino> {
    match op {
        Meta::Create { parent, .. } | Meta::Link { parent, .. } | Meta::Remove { parent, .. } => {
            vec![*parent]
        }
        Meta::Rename {
            parent, newparent, ..
        } => vec![*parent, *newparent],
    }
}
