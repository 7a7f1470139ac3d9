//! The process's allocator: big buffers straight from the kernel, on
//! transparent huge pages; everything else from the C allocator.
//!
//! The memory plan needs big buffers returned to the system when freed
//! (`budget::release_large_buffers`), so each activation tensor tract makes
//! is a fresh mapping, faulted in 4 KiB at a time: on a 4K frame that was a
//! fifth of the run. Mapped 2 MiB-aligned and marked `MADV_HUGEPAGE`, the
//! same buffers fault in 2 MiB at a time, where the kernel's THP setting is
//! `madvise` (Debian's default) or `always`. Freeing them still
//! unmaps them, so the plan holds. Measured in BENCHMARKS.md.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Buffers this big or bigger are mapped on their own.
pub const BIG: usize = 4 << 20;
/// Huge page size on x86_64 and aarch64 (4 KiB base pages).
const HUGE: usize = 2 << 20;

const UNDECIDED: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;
/// Decided once, at the first big allocation, and never changed: whether a
/// big buffer is ours is told from its size alone, on free as on allocation.
static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// The global allocator (`main.rs`). `EDGEWATCH_HUGEPAGES=0`, or
/// `EDGEWATCH_MMAP_THRESHOLD_KB=0` (glibc's own caching, see budget.rs),
/// leaves every buffer to the C allocator.
pub struct HugePageAlloc;

fn env_is_zero(name: &std::ffi::CStr) -> bool {
    // getenv, not std::env: no allocation inside the allocator.
    // SAFETY: reads the environment; nothing in edgewatch changes it once
    // threads run.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: getenv returns null or a NUL-terminated string.
    !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == b"0"
}

fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => {
            let on = cfg!(target_os = "linux")
                && !env_is_zero(c"EDGEWATCH_HUGEPAGES")
                && !env_is_zero(c"EDGEWATCH_MMAP_THRESHOLD_KB");
            let want = if on { ON } else { OFF };
            // Another thread may have decided first; its answer stands.
            match MODE.compare_exchange(UNDECIDED, want, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => on,
                Err(now) => now == ON,
            }
        }
    }
}

fn ours(layout: &Layout) -> bool {
    layout.size() >= BIG && layout.align() <= HUGE && enabled()
}

/// Bytes mapped for a buffer of `size`.
fn mapped_len(size: usize) -> usize {
    size.div_ceil(HUGE) * HUGE
}

/// A 2 MiB-aligned anonymous mapping of `mapped_len(size)` bytes, or null.
unsafe fn map(size: usize) -> *mut u8 {
    let len = mapped_len(size);
    // Over-map by one huge page, then trim both ends to the alignment.
    let raw = libc::mmap(
        std::ptr::null_mut(),
        len + HUGE,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        -1,
        0,
    );
    if raw == libc::MAP_FAILED {
        return std::ptr::null_mut();
    }
    let start = raw as usize;
    let aligned = start.next_multiple_of(HUGE);
    if aligned > start {
        libc::munmap(raw, aligned - start);
    }
    let tail = start + len + HUGE - (aligned + len);
    if tail > 0 {
        libc::munmap((aligned + len) as *mut libc::c_void, tail);
    }
    // Advice only: without THP the mapping works with small pages.
    libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    aligned as *mut u8
}

unsafe fn unmap(ptr: *mut u8, size: usize) {
    libc::munmap(ptr as *mut libc::c_void, mapped_len(size));
}

// SAFETY: big buffers are whole private mappings (zeroed, 2 MiB-aligned,
// so any alignment up to 2 MiB holds) and are only ever unmapped by
// `dealloc` with the size they were made for; everything else is System's.
unsafe impl GlobalAlloc for HugePageAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ours(&layout) {
            map(layout.size())
        } else {
            System.alloc(layout)
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ours(&layout) {
            // Fresh anonymous pages are zero.
            map(layout.size())
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ours(&layout) {
            unmap(ptr, layout.size())
        } else {
            System.dealloc(ptr, layout)
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align_unchecked(new_size, layout.align());
        match (ours(&layout), ours(&new)) {
            (false, false) => System.realloc(ptr, layout, new_size),
            // Still inside the same mapping.
            (true, true) if mapped_len(new_size) == mapped_len(layout.size()) => ptr,
            _ => {
                let fresh = self.alloc(new);
                if !fresh.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                fresh
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_buffers_are_aligned_zeroed_mappings_that_grow_shrink_and_go_back() {
        if !enabled() {
            return;
        }
        let a = HugePageAlloc;
        unsafe {
            let layout = Layout::from_size_align(BIG + 123, 64).unwrap();
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(p as usize % HUGE, 0);
            assert!(std::slice::from_raw_parts(p, layout.size())
                .iter()
                .all(|b| *b == 0));
            std::ptr::write_bytes(p, 7, layout.size());
            // While it is held no one else can map this range: its smaps
            // entry is ours, and says the kernel may back it with huge pages.
            let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
                .unwrap_or_default();
            if thp.contains("[madvise]") || thp.contains("[always]") {
                let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
                let start = format!("{:x}-", p as usize);
                let entry: String = smaps
                    .lines()
                    .skip_while(|l| !l.starts_with(&start))
                    .take_while(|l| l.starts_with(&start) || !l.contains('-') || l.contains(':'))
                    .collect::<Vec<_>>()
                    .join("\n");
                let eligible = entry
                    .lines()
                    .find(|l| l.starts_with("THPeligible:"))
                    .and_then(|l| l.split_whitespace().nth(1));
                assert_eq!(eligible, Some("1"), "{entry}");
            }
            // Grows past its mapping: moved, contents kept.
            let q = a.realloc(p, layout, 3 * BIG);
            assert!(!q.is_null());
            let grown = std::slice::from_raw_parts(q, 3 * BIG);
            assert!(grown[..layout.size()].iter().all(|b| *b == 7));
            // Shrinks below BIG: back to the C allocator, contents kept.
            let big = Layout::from_size_align(3 * BIG, 64).unwrap();
            let r = a.realloc(q, big, 1000);
            assert!(std::slice::from_raw_parts(r, 1000).iter().all(|b| *b == 7));
            a.dealloc(r, Layout::from_size_align(1000, 64).unwrap());
        }
    }
}
