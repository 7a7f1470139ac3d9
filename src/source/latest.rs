//! Latest-frame hand-over between a camera and the inference workers.
//!
//! A camera produces frames at its own rate; inference takes them at its own.
//! The camera keeps only the newest frame in a one-frame slot and sends the
//! workers a ticket, not the frame: a worker redeems the ticket when it is
//! free and gets whatever is newest then. Frames replaced before anyone took
//! them are dropped and counted. Pixels live in a fixed pool of buffers, so a
//! stream of any length allocates nothing per frame.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::base::frame::FrameMeta;
use crate::infer::tile_reuse::TileReuse;

/// A fixed number of RGB8 frame buffers, handed out and taken back.
pub struct FramePool {
    free: Mutex<Vec<RgbImage>>,
    capacity: usize,
    allocated: AtomicUsize,
}

impl FramePool {
    /// A pool that holds at most `capacity` buffers; none is allocated yet.
    pub fn new(capacity: usize) -> Arc<FramePool> {
        Arc::new(FramePool {
            free: Mutex::new(Vec::with_capacity(capacity)),
            capacity,
            allocated: AtomicUsize::new(0),
        })
    }

    /// A free buffer, or a new one while fewer than `capacity` exist; `None`
    /// when all are in use.
    pub fn get(self: &Arc<Self>) -> Option<PooledFrame> {
        let reused = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let image = match reused {
            Some(img) => img,
            None => {
                let n = self.allocated.fetch_add(1, Ordering::SeqCst);
                if n >= self.capacity {
                    self.allocated.fetch_sub(1, Ordering::SeqCst);
                    return None;
                }
                RgbImage::new(0, 0)
            }
        };
        Some(PooledFrame {
            image: Some(image),
            pool: self.clone(),
        })
    }

    /// Buffers created so far (at most `capacity`).
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::SeqCst)
    }
}

/// A buffer from a `FramePool`; it goes back when dropped.
pub struct PooledFrame {
    image: Option<RgbImage>,
    pool: Arc<FramePool>,
}

impl Deref for PooledFrame {
    type Target = RgbImage;
    fn deref(&self) -> &RgbImage {
        self.image.as_ref().expect("present until dropped")
    }
}

impl DerefMut for PooledFrame {
    fn deref_mut(&mut self) -> &mut RgbImage {
        self.image.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Some(img) = self.image.take() {
            self.pool
                .free
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(img);
        }
    }
}

/// A converted frame and its identity.
pub struct CapturedFrame {
    /// RGB8 pixels.
    pub image: PooledFrame,
    /// Source, sequence number, id, capture time.
    pub meta: FrameMeta,
    /// The stream's tile reuse state (`motion = true`), shared by its frames.
    pub reuse: Option<Arc<Mutex<TileReuse>>>,
}

/// Frame counts of one camera source.
#[derive(Debug, Default)]
pub struct FrameCounts {
    /// Frames the device delivered.
    pub captured: AtomicU64,
    /// Frames skipped by `every_nth`.
    pub skipped: AtomicU64,
    /// Frames replaced by a newer one before inference took them.
    pub dropped: AtomicU64,
    /// Frames that could not be converted (torn or corrupt).
    pub bad: AtomicU64,
    /// Frames handed to inference.
    pub taken: AtomicU64,
    /// Times the device was (re)opened after losing it.
    pub reconnects: AtomicU64,
    /// Frames not inferred because nothing moved (`motion = true`).
    pub still: AtomicU64,
}

/// The newest frame of one camera, and the tickets out for it.
pub struct LatestFrame {
    slot: Mutex<Option<CapturedFrame>>,
    ready: Condvar,
    in_flight: AtomicUsize,
    /// Tickets not yet redeemed (still in the queue).
    waiting: AtomicUsize,
    max_in_flight: usize,
    /// Counts, for metrics and logs.
    pub counts: FrameCounts,
}

impl LatestFrame {
    /// A slot whose camera may have up to `max_in_flight` frames in inference
    /// at once (the worker count: more would only wait in the queue).
    pub fn new(max_in_flight: usize) -> Arc<LatestFrame> {
        Arc::new(LatestFrame {
            slot: Mutex::new(None),
            ready: Condvar::new(),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            max_in_flight: max_in_flight.max(1),
            counts: FrameCounts::default(),
        })
    }

    /// Makes `frame` the newest; the one it replaces is dropped and counted.
    pub fn put(&self, frame: CapturedFrame) {
        let old = self
            .slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(frame);
        if old.is_some() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.ready.notify_one();
    }

    /// Empties the slot, counting the frame as dropped: the camera needs its
    /// buffer back.
    pub fn reclaim(&self) -> Option<CapturedFrame> {
        let old = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        if old.is_some() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        old
    }

    /// A ticket, when fewer than the maximum are out.
    pub fn ticket(self: &Arc<Self>) -> Option<FrameTicket> {
        self.in_flight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            })
            .ok()?;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        Some(FrameTicket {
            slot: self.clone(),
            redeemed: AtomicBool::new(false),
        })
    }

    /// Tickets out (queued or in inference).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Tickets still in the queue, not yet redeemed.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Most tickets out at once.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    fn take(&self, wait: Duration) -> Option<CapturedFrame> {
        let deadline = Instant::now() + wait;
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(frame) = slot.take() {
                self.counts.taken.fetch_add(1, Ordering::Relaxed);
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            slot = self
                .ready
                .wait_timeout(slot, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// A claim on a camera's newest frame, queued for the inference workers.
pub struct FrameTicket {
    slot: Arc<LatestFrame>,
    redeemed: AtomicBool,
}

impl FrameTicket {
    /// The newest frame now; waits up to `wait` when another ticket took
    /// the last one. `None` when no frame came (the camera stalled).
    pub fn take(&self, wait: Duration) -> Option<CapturedFrame> {
        self.redeem();
        self.slot.take(wait)
    }

    fn redeem(&self) {
        if !self.redeemed.swap(true, Ordering::SeqCst) {
            self.slot.waiting.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for FrameTicket {
    fn drop(&mut self) {
        self.redeem();
        self.slot.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Caps the rate at which frames go to inference, on a fixed schedule so the
/// average rate is the cap even when frames arrive at another rate.
#[derive(Debug)]
pub struct Pacer {
    interval: Option<Duration>,
    next: Option<Instant>,
}

impl Pacer {
    /// At most `fps` frames a second; `None` or 0 means no cap.
    pub fn new(fps: Option<f64>) -> Pacer {
        Pacer {
            interval: fps
                .filter(|f| *f > 0.0)
                .map(|f| Duration::from_secs_f64(1.0 / f)),
            next: None,
        }
    }

    /// Whether a frame arriving `now` may go; if so, the slot is used.
    pub fn admit(&mut self, now: Instant) -> bool {
        let Some(interval) = self.interval else {
            return true;
        };
        match self.next {
            Some(next) if now < next => false,
            Some(next) => {
                // After a long gap (a stall), start a fresh schedule rather
                // than letting a burst through to catch up.
                self.next = Some(if now - next > interval {
                    now + interval
                } else {
                    next + interval
                });
                true
            }
            None => {
                self.next = Some(now + interval);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(pool: &Arc<FramePool>, seq: u64) -> CapturedFrame {
        CapturedFrame {
            image: pool.get().expect("a free buffer"),
            meta: FrameMeta {
                source: "cam".into(),
                seq,
                id: format!("cam-{seq}"),
                captured_at: SystemTime::now(),
                path: None,
            },
            reuse: None,
        }
    }

    #[test]
    fn pool_reuses_buffers_and_stops_at_capacity() {
        let pool = FramePool::new(2);
        let mut a = pool.get().unwrap();
        *a = RgbImage::new(8, 8);
        let ptr = a.as_raw().as_ptr();
        let b = pool.get().unwrap();
        assert!(pool.get().is_none(), "capacity reached");
        drop(a);
        let c = pool.get().unwrap();
        assert_eq!(c.as_raw().as_ptr(), ptr, "the same buffer came back");
        drop((b, c));
        assert_eq!(pool.allocated(), 2);
    }

    #[test]
    fn newest_frame_wins_and_replaced_ones_count_as_dropped() {
        let pool = FramePool::new(4);
        let latest = LatestFrame::new(1);
        for seq in 0..3 {
            latest.put(frame(&pool, seq));
        }
        let ticket = latest.ticket().unwrap();
        assert!(latest.ticket().is_none(), "one ticket out at most");
        assert_eq!(latest.waiting(), 1);
        let got = ticket.take(Duration::ZERO).unwrap();
        assert_eq!(got.meta.seq, 2);
        assert_eq!(latest.waiting(), 0);
        assert_eq!(latest.counts.dropped.load(Ordering::Relaxed), 2);
        assert!(ticket.take(Duration::from_millis(10)).is_none());
        drop(ticket);
        assert_eq!(latest.in_flight(), 0);
        assert!(latest.ticket().is_some());
    }

    #[test]
    fn a_ticket_waits_for_the_next_frame() {
        let pool = FramePool::new(2);
        let latest = LatestFrame::new(2);
        let ticket = latest.ticket().unwrap();
        let l = latest.clone();
        let p = pool.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            l.put(frame(&p, 7));
        });
        let got = ticket.take(Duration::from_secs(5)).unwrap();
        assert_eq!(got.meta.seq, 7);
        t.join().unwrap();
    }

    #[test]
    fn pacer_holds_the_average_rate() {
        let mut pacer = Pacer::new(Some(5.0));
        let start = Instant::now();
        // 30 fps camera for 10 s.
        let admitted = (0..300)
            .filter(|i| pacer.admit(start + Duration::from_millis(i * 1000 / 30)))
            .count();
        assert!((49..=51).contains(&admitted), "{admitted} frames admitted");
        let mut open = Pacer::new(None);
        assert!((0..10).all(|_| open.admit(start)));
    }

    #[test]
    fn pacer_does_not_burst_after_a_stall() {
        let mut pacer = Pacer::new(Some(10.0));
        let t0 = Instant::now();
        assert!(pacer.admit(t0));
        // A 5 s stall, then frames every 10 ms.
        let after = t0 + Duration::from_secs(5);
        let admitted = (0..10)
            .filter(|i| pacer.admit(after + Duration::from_millis(i * 10)))
            .count();
        assert_eq!(admitted, 1);
    }
}
