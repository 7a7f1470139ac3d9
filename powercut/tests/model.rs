//! The power-cut filesystem itself, mounted for real (root and /dev/fuse,
//! as CI runs): what a cut keeps and what it loses.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use edgewatch_powercut::{mount, CutMode, Disk, Mount};

fn fresh(dir: &Path, disk: Disk) -> Mount {
    let at = dir.join("mnt");
    fs::create_dir_all(&at).unwrap();
    mount(&at, disk).expect("mount (these tests need root and /dev/fuse)")
}

fn sync_dir(dir: &Path) {
    File::open(dir).unwrap().sync_all().unwrap();
}

fn write(path: &Path, bytes: &[u8], sync: bool) {
    let mut f = File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    if sync {
        f.sync_data().unwrap();
    }
}

#[test]
fn synced_bytes_survive_a_cut_and_unsynced_ones_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let m = fresh(dir.path(), Disk::default());
    let root = m.path().to_path_buf();
    write(&root.join("kept"), b"synced", true);
    write(&root.join("lost"), b"never synced", false);
    sync_dir(&root);
    let mut f = OpenOptions::new()
        .append(true)
        .open(root.join("kept"))
        .unwrap();
    f.write_all(b" and more").unwrap();
    assert_eq!(fs::read(root.join("kept")).unwrap(), b"synced and more");
    drop(f);
    let (disk, report) = m.cut_as(1, Some(CutMode::Forget));
    assert_eq!(report.writes_pending, 2, "{report}");
    let m = fresh(dir.path(), disk);
    let root = m.path().to_path_buf();
    assert_eq!(fs::read(root.join("kept")).unwrap(), b"synced");
    assert_eq!(
        fs::read(root.join("lost")).unwrap(),
        b"",
        "the name was committed, the bytes were not"
    );
}

#[test]
fn names_are_durable_only_once_a_directory_is_fsynced() {
    let dir = tempfile::tempdir().unwrap();
    let m = fresh(dir.path(), Disk::default());
    let root = m.path().to_path_buf();
    fs::create_dir(root.join("a")).unwrap();
    write(&root.join("a/one"), b"1", true);
    sync_dir(&root.join("a"));
    // Synced bytes under a name no directory fsync has committed.
    write(&root.join("a/two"), b"2", true);
    fs::rename(root.join("a/one"), root.join("uno")).unwrap();
    let (disk, _) = m.cut_as(2, Some(CutMode::Forget));
    let m = fresh(dir.path(), disk);
    let root = m.path().to_path_buf();
    assert_eq!(
        fs::read(root.join("a/one")).unwrap(),
        b"1",
        "the rename was lost"
    );
    assert!(!root.join("uno").exists());
    assert!(!root.join("a/two").exists(), "the name was never committed");
    // Once committed, the rename and the new name hold.
    write(&root.join("a/two"), b"2", true);
    fs::rename(root.join("a/one"), root.join("uno")).unwrap();
    sync_dir(m.path());
    let (disk, _) = m.cut_as(3, Some(CutMode::Forget));
    let m = fresh(dir.path(), disk);
    let root = m.path().to_path_buf();
    assert_eq!(fs::read(root.join("uno")).unwrap(), b"1");
    assert_eq!(fs::read(root.join("a/two")).unwrap(), b"2");
    assert!(!root.join("a/one").exists());
}

#[test]
fn a_partial_flush_keeps_a_prefix_of_the_writes_some_torn() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen_torn = false;
    let mut seen_lengths = std::collections::BTreeSet::new();
    for seed in 0..40 {
        let m = fresh(dir.path(), Disk::default());
        let path = m.path().join("log");
        write(&path, b"", true);
        sync_dir(m.path());
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        for i in 0..8u8 {
            f.write_all(&[b'a' + i; 100]).unwrap();
        }
        drop(f);
        let (disk, report) = m.cut_as(seed, Some(CutMode::Prefix));
        assert_eq!(report.writes_pending, 8, "{report}");
        let m = fresh(dir.path(), disk);
        let got = fs::read(m.path().join("log")).unwrap();
        let want: Vec<u8> = (0..8u8).flat_map(|i| [b'a' + i; 100]).collect();
        assert_eq!(
            got[..],
            want[..got.len()],
            "seed {seed}: a prefix of what was written"
        );
        seen_torn |= !got.len().is_multiple_of(100);
        seen_lengths.insert(got.len());
        drop(m);
    }
    assert!(seen_torn, "some seed tears a write");
    assert!(
        seen_lengths.len() > 4,
        "seeds choose different prefixes: {seen_lengths:?}"
    );
}

#[test]
fn the_trigger_fails_other_processes_but_not_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let m = fresh(dir.path(), Disk::default());
    let root = m.path().to_path_buf();
    m.arm(3);
    // Another process: `sh` writing three files; the third change trips.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("echo a > x && echo b > y && echo c > z")
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(!status.success(), "the shell hit EIO");
    assert!(m.tripped());
    assert_eq!(
        fs::read(root.join("x")).unwrap(),
        b"a\n",
        "the owner still reads the live tree"
    );
    write(&root.join("mine"), b"owner", false);
    let (disk, _) = m.cut_as(4, Some(CutMode::Forget));
    let m = fresh(dir.path(), disk);
    assert!(
        fs::read_dir(m.path()).unwrap().next().is_none(),
        "nothing was ever synced"
    );
}

#[test]
fn a_clean_shutdown_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let m = fresh(dir.path(), Disk::default());
    fs::create_dir_all(m.path().join("d/e")).unwrap();
    write(&m.path().join("d/e/f"), b"kept", false);
    let disk = m.shut_down();
    let m = fresh(dir.path(), disk);
    assert_eq!(fs::read(m.path().join("d/e/f")).unwrap(), b"kept");
}
