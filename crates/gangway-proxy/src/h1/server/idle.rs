//! The header timeout and the stop signal of one listener's connections
//! while they wait for a request head.
//!
//! Every waiting connection needs a deadline and a way to hear that
//! gangway is stopping. A runtime timer and a `Notify` waiter cost 176
//! bytes in each connection's state; kept here instead, a waiting
//! connection holds 16 bytes and a 40-byte slot in a shared table. As the
//! header timeout is the same for every connection of a listener,
//! deadlines are met in the order the waits began: each shard keeps its
//! waits in a list in that order, and one reaper task per listener ends
//! the expired ones from the front, every [`TICK`] while any wait is
//! open, parked otherwise.
//!
//! A deadline is met between one tick early and one tick late; a client is
//! given the header timeout to within a tenth of a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// How often the reaper looks for expired waits (while there are any).
const TICK: Duration = Duration::from_millis(100);
/// Shards of the table, so that workers serving different connections
/// rarely meet on one lock.
const SHARDS: usize = 16;
/// The end of a shard's list.
const NONE: u32 = u32::MAX;

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// The header timeout passed.
    Expired,
    /// gangway is stopping (only for waits that asked to hear it).
    Stopping,
}

/// The waits of one listener's connections.
pub(crate) struct IdleWatch {
    timeout: Duration,
    /// When the watch began: deadlines are counted from it.
    epoch: Instant,
    stopped: AtomicBool,
    shards: [Mutex<Shard>; SHARDS],
    /// Wakes the parked reaper when a shard gets its first wait, and
    /// when the watch goes.
    reaper: Arc<Notify>,
}

#[derive(Default)]
struct Shard {
    slots: Vec<Slot>,
    /// Unused slots.
    free: Vec<u32>,
    /// The open waits, oldest first.
    head: u32,
    tail: u32,
    open: usize,
}

struct Slot {
    waker: Option<Waker>,
    /// Milliseconds after the watch's epoch.
    deadline: u64,
    prev: u32,
    next: u32,
    expired: bool,
}

impl IdleWatch {
    /// A watch whose waits last `timeout`, and the reaper that ends them
    /// (to be spawned; it returns once the watch is gone).
    pub(crate) fn new(timeout: Duration) -> (Arc<IdleWatch>, impl Future<Output = ()> + Send) {
        let watch = Arc::new(IdleWatch {
            timeout,
            epoch: Instant::now(),
            stopped: AtomicBool::new(false),
            shards: std::array::from_fn(|_| {
                Mutex::new(Shard {
                    head: NONE,
                    tail: NONE,
                    ..Shard::default()
                })
            }),
            reaper: Arc::new(Notify::new()),
        });
        let reaper = reap(Arc::downgrade(&watch), Arc::clone(&watch.reaper));
        (watch, reaper)
    }

    /// Tells the waits that asked to hear it that gangway is stopping.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let wakers: Vec<Waker> = lock(shard)
                .slots
                .iter()
                .filter_map(|slot| slot.waker.clone())
                .collect();
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Starts a wait in shard `shard` (any number; connections spread
    /// over the shards by it), which ends when the header timeout has
    /// passed, or, if `hear_stop`, when gangway stops.
    pub(crate) fn wait(&self, shard: usize, hear_stop: bool) -> HeadWait<'_> {
        let shard = shard % SHARDS;
        // Saturating: a timeout of years must not overflow.
        let timeout = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = self.millis(Instant::now()).saturating_add(timeout);
        let mut s = lock(&self.shards[shard]);
        let slot = Slot {
            waker: None,
            deadline,
            prev: s.tail,
            next: NONE,
            expired: false,
        };
        let key = match s.free.pop() {
            Some(key) => {
                s.slots[key as usize] = slot;
                key
            }
            None => {
                s.slots.push(slot);
                (s.slots.len() - 1) as u32
            }
        };
        match s.tail {
            NONE => s.head = key,
            tail => s.slots[tail as usize].next = key,
        }
        s.tail = key;
        s.open += 1;
        let first = s.open == 1;
        drop(s);
        if first {
            self.reaper.notify_one();
        }
        HeadWait {
            watch: self,
            key,
            shard: shard as u8,
            hear_stop,
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Ends the waits whose deadline has passed; whether any are open.
    fn expire(&self) -> bool {
        let now = self.millis(Instant::now());
        let mut any_open = false;
        let mut wakers = Vec::new();
        for shard in &self.shards {
            let mut s = lock(shard);
            while s.head != NONE && s.slots[s.head as usize].deadline <= now {
                let key = s.head;
                s.unlink(key);
                let slot = &mut s.slots[key as usize];
                slot.expired = true;
                wakers.extend(slot.waker.take());
            }
            any_open |= s.open > 0;
        }
        wakers.into_iter().for_each(Waker::wake);
        any_open
    }

    fn is_idle(&self) -> bool {
        self.shards.iter().all(|shard| lock(shard).open == 0)
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        // The reaper returns.
        self.reaper.notify_one();
    }
}

impl Shard {
    /// Takes an open wait out of the list.
    fn unlink(&mut self, key: u32) {
        let (prev, next) = {
            let slot = &self.slots[key as usize];
            (slot.prev, slot.next)
        };
        match prev {
            NONE => self.head = next,
            prev => self.slots[prev as usize].next = next,
        }
        match next {
            NONE => self.tail = prev,
            next => self.slots[next as usize].prev = prev,
        }
        self.open -= 1;
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Ends expired waits every tick while any are open; parked otherwise.
/// Holds the watch only while it works, so that it returns when the
/// listener and its connections are gone.
async fn reap(watch: Weak<IdleWatch>, wake: Arc<Notify>) {
    loop {
        let idle = match watch.upgrade() {
            Some(watch) => watch.is_idle(),
            None => return,
        };
        if idle {
            // A wait begun since the check left a permit: no wake is lost.
            wake.notified().await;
            continue;
        }
        loop {
            tokio::time::sleep(TICK).await;
            match watch.upgrade() {
                Some(watch) if watch.expire() => {}
                Some(_) => break,
                None => return,
            }
        }
    }
}

/// One connection's wait for a request head; ends the wait when dropped.
pub(crate) struct HeadWait<'a> {
    watch: &'a IdleWatch,
    key: u32,
    shard: u8,
    hear_stop: bool,
}

impl Future for HeadWait<'_> {
    type Output = WaitEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd> {
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        let slot = &mut s.slots[self.key as usize];
        if slot.expired {
            return Poll::Ready(WaitEnd::Expired);
        }
        match &mut slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        drop(s);
        // After the waker is in place: a stop that comes after this check
        // finds it there and wakes it.
        if self.hear_stop && self.watch.is_stopped() {
            return Poll::Ready(WaitEnd::Stopping);
        }
        Poll::Pending
    }
}

impl Drop for HeadWait<'_> {
    fn drop(&mut self) {
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        let slot = &mut s.slots[self.key as usize];
        slot.waker = None;
        if !slot.expired {
            s.unlink(self.key);
        }
        s.free.push(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short, so that the tests are; the bound on anything they wait for
    /// is [`BOUND`].
    const TIMEOUT: Duration = Duration::from_millis(200);
    const BOUND: Duration = Duration::from_secs(5);

    fn poll_once(wait: &mut HeadWait<'_>) -> Poll<WaitEnd> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(wait).poll(&mut cx)
    }

    /// Waits for `wait` to end (woken by the reaper); how long it lasted
    /// since `began`.
    async fn lasted(wait: HeadWait<'_>, began: Instant) -> (WaitEnd, Duration) {
        let end = tokio::time::timeout(BOUND, wait)
            .await
            .expect("the wait ends within the bound");
        (end, began.elapsed())
    }

    #[tokio::test]
    async fn waits_end_when_their_deadline_has_passed_not_before() {
        let (watch, reaper) = IdleWatch::new(TIMEOUT);
        tokio::spawn(reaper);
        let a_began = Instant::now();
        let a = watch.wait(3, false);
        tokio::time::sleep(TIMEOUT / 2).await;
        let b_began = Instant::now();
        let mut b = watch.wait(3 + SHARDS, false);
        let c = watch.wait(4, false);
        assert_eq!(lasted(a, a_began).await.0, WaitEnd::Expired);
        // Its own deadline is later: still waiting, if it has not come.
        if b_began.elapsed() < TIMEOUT {
            assert_eq!(poll_once(&mut b), Poll::Pending);
        }
        for wait in [b, c] {
            let (end, lasted) = lasted(wait, b_began).await;
            assert_eq!(end, WaitEnd::Expired);
            assert!(lasted >= TIMEOUT, "ended after {lasted:?}");
        }
        assert!(a_began.elapsed() >= TIMEOUT);
    }

    #[tokio::test]
    async fn a_wait_ended_early_leaves_the_others_and_its_slot_is_reused() {
        let (watch, reaper) = IdleWatch::new(TIMEOUT);
        tokio::spawn(reaper);
        let began = Instant::now();
        let a = watch.wait(0, false);
        let b = watch.wait(0, false);
        let c = watch.wait(0, false);
        drop(a);
        drop(c);
        let d = watch.wait(0, false);
        assert_eq!(
            lock(&watch.shards[0]).slots.len(),
            3,
            "a freed slot is reused"
        );
        assert_eq!(lasted(b, began).await.0, WaitEnd::Expired);
        assert_eq!(lasted(d, began).await.0, WaitEnd::Expired);
        let s = lock(&watch.shards[0]);
        assert_eq!((s.open, s.head, s.tail, s.free.len()), (0, NONE, NONE, 3));
    }

    #[tokio::test]
    async fn a_stop_ends_the_waits_that_hear_it_and_wakes_them() {
        let (watch, reaper) = IdleWatch::new(Duration::from_secs(60));
        tokio::spawn(reaper);
        let waiting = {
            let watch = Arc::clone(&watch);
            tokio::spawn(async move { watch.wait(1, true).await })
        };
        let mut deaf = watch.wait(1, false);
        tokio::task::yield_now().await;
        watch.stop();
        let ended = tokio::time::timeout(BOUND, waiting).await;
        assert_eq!(ended.ok().and_then(Result::ok), Some(WaitEnd::Stopping));
        assert_eq!(poll_once(&mut deaf), Poll::Pending);
        // A wait begun after the stop ends at once.
        assert_eq!(
            poll_once(&mut watch.wait(2, true)),
            Poll::Ready(WaitEnd::Stopping)
        );
    }

    #[tokio::test]
    async fn a_timeout_of_any_length_is_taken() {
        let (watch, reaper) = IdleWatch::new(Duration::MAX);
        tokio::spawn(reaper);
        let mut wait = watch.wait(0, false);
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(poll_once(&mut wait), Poll::Pending);
    }

    #[tokio::test]
    async fn the_reaper_parks_when_idle_and_returns_when_the_watch_is_gone() {
        let (watch, reaper) = IdleWatch::new(TIMEOUT);
        let reaper = tokio::spawn(reaper);
        tokio::time::sleep(TICK * 3).await;
        // Parked, then woken by a new wait, which it ends.
        let began = Instant::now();
        assert_eq!(
            lasted(watch.wait(7, false), began).await.0,
            WaitEnd::Expired
        );
        drop(watch);
        tokio::time::timeout(BOUND, reaper)
            .await
            .expect("the reaper returns once the watch is gone")
            .expect("the reaper does not panic");
    }
}
