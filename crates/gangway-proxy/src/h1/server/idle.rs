//! The header timeout and the stop signal of one listener's connections
//! while they wait for a request head, and the connections parked when
//! that wait lasts.
//!
//! Every waiting connection needs a deadline and a way to hear that
//! gangway is stopping. A runtime timer and a `Notify` waiter cost 176
//! bytes in each connection's state; kept here instead, a waiting
//! connection holds 16 bytes and a slot in a shared table. As the header
//! timeout is the same for every connection of a listener, deadlines are
//! met in the order the waits began: each shard keeps its waits in a list
//! in that order, and one reaper task per listener ends the expired ones
//! from the front, every [`TICK`] while any wait is open, parked
//! otherwise.
//!
//! A connection that has waited for a request head for a while (a second
//! in gangway, `park_after`) and holds nothing but its socket is parked:
//! its task ends, the socket leaves the runtime's reactor for an epoll
//! instance of the watch's own, and the socket, the client's address and
//! the connection's count stay in the slot. What an idle keep-alive
//! connection costs is then that slot (56 bytes) instead of its task and
//! its registration with the reactor (512 bytes). A thread waits on that
//! epoll instance: when a client sends something, it gives the connection
//! to a new task (with a new header timeout, as nginx starts
//! `client_header_timeout` when a kept-alive connection's next request
//! begins), and when a client leaves, closes it. The reaper closes parked
//! connections whose deadline has passed, and a stop closes them all.
//!
//! A deadline is met between one tick early and one tick late; a client is
//! given the header timeout to within a tenth of a second.

use crate::headers::ClientInfo;
use crate::server::OpenConnection;
use mio::unix::SourceFd;
use std::future::Future;
use std::os::fd::AsRawFd;
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
/// Slots allocated at a time.
const CHUNK: usize = 64;
/// The end of a shard's list.
const NONE: u32 = u32::MAX;
/// Readiness events taken from the parking's epoll instance at a time.
const EVENTS: usize = 256;
/// The event that tells the parking's thread that the watch is gone (no
/// slot's token: those are below 2^36).
const GONE: mio::Token = mio::Token(usize::MAX);

/// Why a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitEnd {
    /// The header timeout passed.
    Expired,
    /// gangway is stopping (only for waits that asked to hear it).
    Stopping,
    /// The wait has lasted: the connection is asked to park (only waits
    /// that hear the stop signal, which hold no part of a request).
    Park,
}

/// A connection given up by its task while it waits for a request head.
pub(crate) struct Parked {
    pub(crate) stream: std::net::TcpStream,
    pub(crate) client: ClientInfo,
    pub(crate) open: OpenConnection,
}

/// The waits of one listener's connections.
pub(crate) struct IdleWatch {
    timeout: Duration,
    park_after: Duration,
    /// When the watch began: the times of waits are counted from it.
    epoch: Instant,
    stopped: AtomicBool,
    shards: [Mutex<Shard>; SHARDS],
    /// Wakes the parked reaper when a shard gets its first wait, and
    /// when the watch goes.
    reaper: Arc<Notify>,
    /// Where parked connections wait; `None` if it could not be made
    /// (connections then wait in their tasks).
    parking: Option<Parking>,
}

/// The epoll instance parked connections wait in, which a thread of its
/// own waits on.
struct Parking {
    registry: mio::Registry,
    /// Tells the thread that the watch is gone. (Shared with the thread:
    /// were it closed with the watch, epoll would forget its event before
    /// the thread had seen it.)
    gone: Arc<mio::Waker>,
}

#[derive(Default)]
struct Shard {
    slots: Slots,
    /// Unused slots.
    free: Vec<u32>,
    /// Waits of connections in their tasks, oldest first.
    waiting: List,
    /// Waits asked to park and parked connections, oldest first.
    parked: List,
}

/// Slots to the number of waits, in chunks of [`CHUNK`]: a table of N
/// slots holds room for at most one chunk more than it needs (a `Vec`
/// that doubles, for up to twice as many).
#[derive(Default)]
struct Slots(Vec<Vec<Slot>>);

impl Slots {
    /// Adds a slot; its key.
    fn push(&mut self, slot: Slot) -> u32 {
        let full = self.0.last().is_none_or(|chunk| chunk.len() == CHUNK);
        if full {
            self.0.push(Vec::with_capacity(CHUNK));
        }
        let chunks = self.0.len() - 1;
        let last = &mut self.0[chunks];
        last.push(slot);
        (chunks * CHUNK + last.len() - 1) as u32
    }

    fn get(&self, key: u32) -> Option<&Slot> {
        let key = key as usize;
        self.0.get(key / CHUNK)?.get(key % CHUNK)
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.0.iter().flatten()
    }
}

impl std::ops::Index<u32> for Slots {
    type Output = Slot;

    fn index(&self, key: u32) -> &Slot {
        &self.0[key as usize / CHUNK][key as usize % CHUNK]
    }
}

impl std::ops::IndexMut<u32> for Slots {
    fn index_mut(&mut self, key: u32) -> &mut Slot {
        &mut self.0[key as usize / CHUNK][key as usize % CHUNK]
    }
}

/// A list of slots, linked through them.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u32,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NONE,
            tail: NONE,
            len: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Waiting,
    Parked,
}

struct Slot {
    /// When the wait began, in milliseconds after the watch's epoch.
    began: u64,
    prev: u32,
    next: u32,
    state: State,
}

enum State {
    /// A connection's task waits for a request head.
    Waiting {
        waker: Option<Waker>,
        /// Whether the task may park its connection.
        parkable: bool,
        /// Asked to park: the slot is in the parked list.
        asked: bool,
    },
    /// The task took up the ask and is handing its connection over
    /// ([`Ticket`]).
    Parking,
    Parked(Parked),
    /// The deadline passed; in no list, until the task or ticket sees it.
    Expired,
    Free,
}

impl IdleWatch {
    /// A watch whose waits last `timeout`, and the reaper that ends them
    /// (to be spawned; it returns once the watch is gone). Waits that last
    /// `park_after` are asked to park; a parked connection whose client
    /// sends something goes to `resume`.
    pub(crate) fn new<F>(
        timeout: Duration,
        park_after: Duration,
        resume: F,
    ) -> (Arc<IdleWatch>, impl Future<Output = ()> + Send)
    where
        F: Fn(Parked, Arc<IdleWatch>) + Send + 'static,
    {
        let watch = Arc::new_cyclic(|watch: &Weak<IdleWatch>| IdleWatch {
            timeout,
            park_after,
            epoch: Instant::now(),
            stopped: AtomicBool::new(false),
            shards: std::array::from_fn(|_| Mutex::default()),
            reaper: Arc::new(Notify::new()),
            parking: start_parking(watch.clone(), resume),
        });
        let reaper = reap(Arc::downgrade(&watch), Arc::clone(&watch.reaper));
        (watch, reaper)
    }

    /// Tells the waits that asked to hear it that gangway is stopping,
    /// and closes the parked connections.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for shard in &self.shards {
            let mut wakers = Vec::new();
            let mut closing = Vec::new();
            let mut s = lock(shard);
            for slot in s.slots.iter() {
                if let State::Waiting { waker, .. } = &slot.state {
                    wakers.extend(waker.clone());
                }
            }
            let mut key = s.parked.head;
            while key != NONE {
                let next = s.slots[key].next;
                if matches!(s.slots[key].state, State::Parked(_)) {
                    s.unlink(Which::Parked, key);
                    closing.extend(s.release(key));
                }
                key = next;
            }
            drop(s);
            wakers.into_iter().for_each(Waker::wake);
            drop(closing);
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Starts a wait in shard `shard` (any number; connections spread
    /// over the shards by it), which ends when the header timeout has
    /// passed, or, if `hear_stop`, when gangway stops or the wait has
    /// lasted long enough to park.
    pub(crate) fn wait(&self, shard: usize, hear_stop: bool) -> HeadWait<'_> {
        let shard = shard % SHARDS;
        let began = self.millis(Instant::now());
        let mut s = lock(&self.shards[shard]);
        let key = s.take(Slot {
            began,
            prev: NONE,
            next: NONE,
            state: State::Waiting {
                waker: None,
                parkable: hear_stop && self.parking.is_some(),
                asked: false,
            },
        });
        s.push(Which::Waiting, key);
        let first = s.waiting.len + s.parked.len == 1;
        drop(s);
        if first {
            self.reaper.notify_one();
        }
        HeadWait {
            watch: self,
            key,
            shard: shard as u8,
            hear_stop,
            handed: false,
        }
    }

    /// Takes over the connection of a wait that was asked to park
    /// (`None` if its task could not give it up): it waits in the watch's
    /// epoll instance until its client sends something, its deadline
    /// passes or gangway stops.
    pub(crate) fn park(&self, ticket: Ticket, parked: Option<Parked>) {
        let key = ticket.key;
        // Declared before the lock, so that a connection closed here is
        // closed after the lock is let go.
        let mut closing = parked;
        let mut s = lock(&self.shards[ticket.shard as usize]);
        match s.slots[key].state {
            State::Parking => {
                let registered = match (&closing, &self.parking) {
                    // While the lock is held: the reaper cannot close the
                    // socket (and let its number be reused) before it is
                    // registered. A stop that came first has swept this
                    // shard already, or comes after and sweeps it.
                    (Some(parked), Some(parking)) if !self.is_stopped() => {
                        parking.register(parked, token(&ticket))
                    }
                    _ => false,
                };
                if registered {
                    if let Some(parked) = closing.take() {
                        s.slots[key].state = State::Parked(parked);
                    }
                } else {
                    s.unlink(Which::Parked, key);
                    s.release(key);
                }
            }
            // The deadline passed in between: the slot waited for this.
            State::Expired => {
                s.release(key);
            }
            _ => {}
        }
    }

    /// Takes a parked connection whose client sent something out of the
    /// table (`None` if it is gone: closed at its deadline since the event).
    fn unpark(&self, token: mio::Token) -> Option<Parked> {
        let shard = self.shards.get(token.0 >> 32)?;
        let key = token.0 as u32;
        let mut s = lock(shard);
        if !matches!(s.slots.get(key)?.state, State::Parked(_)) {
            return None;
        }
        s.unlink(Which::Parked, key);
        let parked = s.release(key);
        drop(s);
        if let (Some(parked), Some(parking)) = (&parked, &self.parking) {
            let fd = parked.stream.as_raw_fd();
            let _ = parking.registry.deregister(&mut SourceFd(&fd));
        }
        parked
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// The milliseconds (after the epoch) a wait begun at or before has
    /// lasted `lasted` by now; `None` if none can have.
    fn begun_by(&self, now: u64, lasted: Duration) -> Option<u64> {
        now.checked_sub(u64::try_from(lasted.as_millis()).ok()?)
    }

    /// Ends the waits whose deadline has passed, closing parked
    /// connections among them, and asks the waits that have lasted to
    /// park; whether any wait is open.
    fn tick(&self) -> bool {
        let now = self.millis(Instant::now());
        let expired = self.begun_by(now, self.timeout);
        let lasted = self
            .begun_by(now, self.park_after)
            .filter(|_| self.parking.is_some() && !self.is_stopped());
        let mut any_open = false;
        let mut wakers = Vec::new();
        let mut closing = Vec::new();
        for shard in &self.shards {
            let mut s = lock(shard);
            for which in [Which::Waiting, Which::Parked] {
                while let Some(key) = s.head_begun_by(which, expired) {
                    s.unlink(which, key);
                    match std::mem::replace(&mut s.slots[key].state, State::Expired) {
                        State::Waiting { waker, .. } => wakers.extend(waker),
                        State::Parked(parked) => {
                            s.release(key);
                            closing.push(parked);
                        }
                        _ => {}
                    }
                }
            }
            let mut key = s.waiting.head;
            while key != NONE && lasted.is_some_and(|by| s.slots[key].began <= by) {
                let next = s.slots[key].next;
                if let State::Waiting {
                    waker,
                    parkable: true,
                    asked,
                } = &mut s.slots[key].state
                {
                    *asked = true;
                    wakers.extend(waker.take());
                    s.unlink(Which::Waiting, key);
                    s.push(Which::Parked, key);
                }
                key = next;
            }
            any_open |= s.waiting.len + s.parked.len > 0;
        }
        wakers.into_iter().for_each(Waker::wake);
        drop(closing);
        any_open
    }

    fn is_idle(&self) -> bool {
        self.shards.iter().all(|shard| {
            let s = lock(shard);
            s.waiting.len + s.parked.len == 0
        })
    }

    /// Connections parked now.
    #[cfg(test)]
    pub(crate) fn parked_now(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| {
                let s = lock(shard);
                s.slots
                    .iter()
                    .filter(|slot| matches!(slot.state, State::Parked(_)))
                    .count()
            })
            .sum()
    }
}

impl Drop for IdleWatch {
    fn drop(&mut self) {
        // The reaper and the parking's thread return.
        self.reaper.notify_one();
        if let Some(parking) = &self.parking {
            let _ = parking.gone.wake();
        }
    }
}

impl Shard {
    fn list(&mut self, which: Which) -> &mut List {
        match which {
            Which::Waiting => &mut self.waiting,
            Which::Parked => &mut self.parked,
        }
    }

    /// A slot for `slot`: an unused one if there is one.
    fn take(&mut self, slot: Slot) -> u32 {
        match self.free.pop() {
            Some(key) => {
                self.slots[key] = slot;
                key
            }
            None => self.slots.push(slot),
        }
    }

    /// Makes a slot (in no list) unused; the connection it held, if any.
    fn release(&mut self, key: u32) -> Option<Parked> {
        self.free.push(key);
        match std::mem::replace(&mut self.slots[key].state, State::Free) {
            State::Parked(parked) => Some(parked),
            _ => None,
        }
    }

    /// Appends a slot to a list.
    fn push(&mut self, which: Which, key: u32) {
        let tail = self.list(which).tail;
        let slot = &mut self.slots[key];
        slot.prev = tail;
        slot.next = NONE;
        match tail {
            NONE => self.list(which).head = key,
            tail => self.slots[tail].next = key,
        }
        let list = self.list(which);
        list.tail = key;
        list.len += 1;
    }

    /// Takes a slot out of a list.
    fn unlink(&mut self, which: Which, key: u32) {
        let (prev, next) = {
            let slot = &self.slots[key];
            (slot.prev, slot.next)
        };
        match prev {
            NONE => self.list(which).head = next,
            prev => self.slots[prev].next = next,
        }
        match next {
            NONE => self.list(which).tail = prev,
            next => self.slots[next].prev = prev,
        }
        self.list(which).len -= 1;
    }

    /// The list's first slot if its wait began at or before `by`.
    fn head_begun_by(&mut self, which: Which, by: Option<u64>) -> Option<u32> {
        let head = self.list(which).head;
        (head != NONE && by.is_some_and(|by| self.slots[head].began <= by)).then_some(head)
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How the parking's epoll instance names a slot.
fn token(ticket: &Ticket) -> mio::Token {
    mio::Token((usize::from(ticket.shard) << 32) | ticket.key as usize)
}

/// Ends expired waits and asks lasting ones to park every tick while any
/// wait is open; parked otherwise. Holds the watch only while it works,
/// so that it returns when the listener and its connections are gone.
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
                Some(watch) if watch.tick() => {}
                Some(_) => break,
                None => return,
            }
        }
    }
}

impl Parking {
    /// Has the epoll instance watch a parked connection; whether it does.
    fn register(&self, parked: &Parked, token: mio::Token) -> bool {
        let fd = parked.stream.as_raw_fd();
        let registered = self
            .registry
            .register(&mut SourceFd(&fd), token, mio::Interest::READABLE);
        if let Err(error) = &registered {
            tracing::warn!(%error, "an idle connection could not be parked and is closed");
        }
        registered.is_ok()
    }
}

/// Makes the epoll instance connections are parked in, and the thread
/// that gives those whose client sent something to `resume`; `None` if
/// either cannot be made (connections then wait in their tasks).
fn start_parking<F>(watch: Weak<IdleWatch>, resume: F) -> Option<Parking>
where
    F: Fn(Parked, Arc<IdleWatch>) + Send + 'static,
{
    let started = parking_thread(watch, resume);
    if let Err(error) = &started {
        tracing::warn!(%error, "idle connections cannot be parked: they wait in their tasks");
    }
    started.ok()
}

fn parking_thread<F>(watch: Weak<IdleWatch>, resume: F) -> std::io::Result<Parking>
where
    F: Fn(Parked, Arc<IdleWatch>) + Send + 'static,
{
    let runtime = tokio::runtime::Handle::try_current().map_err(std::io::Error::other)?;
    let poll = mio::Poll::new()?;
    let parking = Parking {
        registry: poll.registry().try_clone()?,
        gone: Arc::new(mio::Waker::new(poll.registry(), GONE)?),
    };
    let gone = Arc::clone(&parking.gone);
    std::thread::Builder::new()
        .name("gangway-parked".into())
        .spawn(move || {
            resume_ready(poll, watch, runtime, resume);
            drop(gone);
        })?;
    Ok(parking)
}

/// The parking's thread: waits for events on parked connections and hands
/// them to `resume` (inside the runtime, which it spawns on); returns once
/// the watch is gone.
///
/// (A thread, not a task: the runtime can wait on another epoll instance
/// only through `AsyncFd`, which needs unsafe code to be made.)
fn resume_ready<F>(
    mut poll: mio::Poll,
    watch: Weak<IdleWatch>,
    runtime: tokio::runtime::Handle,
    resume: F,
) where
    F: Fn(Parked, Arc<IdleWatch>),
{
    let _runtime = runtime.enter();
    let mut events = mio::Events::with_capacity(EVENTS);
    loop {
        if let Err(error) = poll.poll(&mut events, None) {
            if error.kind() != std::io::ErrorKind::Interrupted {
                tracing::warn!(%error, "waiting for parked connections failed");
                std::thread::sleep(TICK);
            }
            continue;
        }
        let Some(watch) = watch.upgrade() else {
            return;
        };
        for event in &events {
            let Some(parked) = watch.unpark(event.token()) else {
                continue;
            };
            // A client that left without sending anything is closed here,
            // not by a task made for it.
            match parked.stream.peek(&mut [0u8; 1]) {
                Ok(0) => {}
                Err(error) if error.kind() != std::io::ErrorKind::WouldBlock => {}
                _ => resume(parked, Arc::clone(&watch)),
            }
        }
    }
}

/// A wait's slot, handed over by a task that took up the ask to park, for
/// [`IdleWatch::park`].
#[must_use]
pub(crate) struct Ticket {
    key: u32,
    shard: u8,
}

/// One connection's wait for a request head; ends the wait when dropped.
pub(crate) struct HeadWait<'a> {
    watch: &'a IdleWatch,
    key: u32,
    shard: u8,
    hear_stop: bool,
    /// Whether a [`Ticket`] has the slot now.
    handed: bool,
}

impl HeadWait<'_> {
    /// Takes up the ask to park: the slot stays for [`IdleWatch::park`]
    /// (also if it expired since).
    pub(crate) fn hand_over(&mut self) -> Ticket {
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        let state = &mut s.slots[self.key].state;
        if matches!(state, State::Waiting { .. }) {
            *state = State::Parking;
        }
        self.handed = true;
        Ticket {
            key: self.key,
            shard: self.shard,
        }
    }

    /// Turns the ask to park down (the connection holds part of a
    /// request now); the wait goes on to its deadline.
    pub(crate) fn decline_park(&mut self) {
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        if let State::Waiting { parkable, .. } = &mut s.slots[self.key].state {
            *parkable = false;
        }
    }
}

impl Future for HeadWait<'_> {
    type Output = WaitEnd;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<WaitEnd> {
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        let State::Waiting {
            waker,
            parkable,
            asked,
        } = &mut s.slots[self.key].state
        else {
            // Expired (nothing else while the wait is polled).
            return Poll::Ready(WaitEnd::Expired);
        };
        match waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            waker => *waker = Some(cx.waker().clone()),
        }
        let park = *asked && *parkable;
        drop(s);
        // After the waker is in place: a stop that comes after this check
        // finds it there and wakes it.
        if self.hear_stop && self.watch.is_stopped() {
            return Poll::Ready(WaitEnd::Stopping);
        }
        if park {
            return Poll::Ready(WaitEnd::Park);
        }
        Poll::Pending
    }
}

impl Drop for HeadWait<'_> {
    fn drop(&mut self) {
        if self.handed {
            return;
        }
        let mut s = lock(&self.watch.shards[self.shard as usize]);
        match s.slots[self.key].state {
            State::Waiting { asked, .. } => {
                let which = if asked { Which::Parked } else { Which::Waiting };
                s.unlink(which, self.key);
                s.release(self.key);
            }
            State::Expired => {
                s.release(self.key);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Short, so that the tests are; the bound on anything they wait for
    /// is [`BOUND`].
    const TIMEOUT: Duration = Duration::from_millis(200);
    const BOUND: Duration = Duration::from_secs(5);
    /// A parking time no wait reaches.
    const NEVER: Duration = Duration::MAX;

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
        let (watch, reaper) = IdleWatch::new(TIMEOUT, NEVER, |_, _| {});
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
        let (watch, reaper) = IdleWatch::new(TIMEOUT, NEVER, |_, _| {});
        tokio::spawn(reaper);
        let began = Instant::now();
        let a = watch.wait(0, false);
        let b = watch.wait(0, false);
        let c = watch.wait(0, false);
        drop(a);
        drop(c);
        let d = watch.wait(0, false);
        assert_eq!(
            lock(&watch.shards[0]).slots.iter().count(),
            3,
            "a freed slot is reused"
        );
        assert_eq!(lasted(b, began).await.0, WaitEnd::Expired);
        assert_eq!(lasted(d, began).await.0, WaitEnd::Expired);
        let s = lock(&watch.shards[0]);
        let List { head, tail, len } = s.waiting;
        assert_eq!((len, head, tail, s.free.len()), (0, NONE, NONE, 3));
    }

    #[tokio::test]
    async fn a_stop_ends_the_waits_that_hear_it_and_wakes_them() {
        let (watch, reaper) = IdleWatch::new(Duration::from_secs(60), NEVER, |_, _| {});
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
        let (watch, reaper) = IdleWatch::new(Duration::MAX, NEVER, |_, _| {});
        tokio::spawn(reaper);
        let mut wait = watch.wait(0, false);
        tokio::time::sleep(TICK * 2).await;
        assert_eq!(poll_once(&mut wait), Poll::Pending);
    }

    #[tokio::test]
    async fn the_reaper_parks_when_idle_and_returns_when_the_watch_is_gone() {
        let (watch, reaper) = IdleWatch::new(TIMEOUT, NEVER, |_, _| {});
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

    /// How long the parking tests let a wait last before it is asked to park.
    const PARK: Duration = Duration::from_millis(200);

    /// Parked connections, as a resume hook gets them.
    type Resumed = tokio::sync::mpsc::UnboundedReceiver<Parked>;

    /// A watch whose parked connections that resume come out of the
    /// returned channel, with its reaper running.
    fn parking_watch(timeout: Duration) -> (Arc<IdleWatch>, Resumed) {
        let (send, resumed) = tokio::sync::mpsc::unbounded_channel();
        let (watch, reaper) = IdleWatch::new(timeout, PARK, move |parked, _| {
            let _ = send.send(parked);
        });
        tokio::spawn(reaper);
        (watch, resumed)
    }

    fn proxy() -> Arc<crate::handler::Proxy> {
        Arc::new(crate::handler::Proxy::new(
            Arc::new(arc_swap::ArcSwap::from_pointee(Default::default())),
            Default::default(),
        ))
    }

    /// A client's socket (blocking, reads bounded) and the connection as
    /// gangway's task holds it, counted by `proxy`.
    async fn connection(proxy: &Arc<crate::handler::Proxy>) -> (std::net::TcpStream, Parked) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(BOUND)).unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let parked = Parked {
            stream: stream.into_std().unwrap(),
            client: ClientInfo {
                ip: peer.ip(),
                https: false,
                local_port: 0,
                trusted: false,
            },
            open: OpenConnection::count(proxy, 100).unwrap(),
        };
        (client, parked)
    }

    /// A wait in `watch` that has been asked to park (and has lasted for
    /// that).
    async fn asked_to_park(watch: &IdleWatch, shard: usize) -> HeadWait<'_> {
        let began = Instant::now();
        let mut wait = watch.wait(shard, true);
        let end = tokio::time::timeout(BOUND, &mut wait).await;
        assert_eq!(end, Ok(WaitEnd::Park));
        let lasted = began.elapsed();
        assert!(lasted >= PARK, "asked to park after {lasted:?}");
        wait
    }

    /// Waits in `watch` until asked to park, and parks `parked` with the
    /// ticket; when the wait began.
    async fn wait_and_park(watch: &IdleWatch, shard: usize, parked: Parked) -> Instant {
        let began = Instant::now();
        let mut wait = asked_to_park(watch, shard).await;
        let ticket = wait.hand_over();
        drop(wait);
        watch.park(ticket, Some(parked));
        began
    }

    /// Reads from a client's socket until it is closed (within the bound).
    async fn closed(mut client: std::net::TcpStream) -> bool {
        tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            matches!(std::io::Read::read(&mut client, &mut byte), Ok(0))
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_lasting_wait_is_parked_and_resumed_when_its_client_sends() {
        let (watch, mut resumed) = parking_watch(Duration::from_secs(60));
        let proxy = proxy();
        let (mut client, parked) = connection(&proxy).await;
        wait_and_park(&watch, 5, parked).await;
        assert_eq!(watch.parked_now(), 1);
        assert_eq!(
            proxy.open_connections.load(Ordering::SeqCst),
            1,
            "still counted"
        );
        // Quiet client: it stays parked (a few ticks).
        tokio::time::sleep(TICK * 3).await;
        assert!(resumed.try_recv().is_err());
        assert_eq!(watch.parked_now(), 1);

        std::io::Write::write_all(&mut client, b"GET").unwrap();
        let back = tokio::time::timeout(BOUND, resumed.recv()).await;
        let mut back = back.expect("resumed within the bound").unwrap();
        assert_eq!(watch.parked_now(), 0);
        // The same connection, with what the client sent still unread.
        back.stream.set_nonblocking(false).unwrap();
        back.stream.set_read_timeout(Some(BOUND)).unwrap();
        let mut sent = [0u8; 3];
        std::io::Read::read_exact(&mut back.stream, &mut sent).unwrap();
        assert_eq!(&sent, b"GET");
    }

    #[tokio::test]
    async fn a_parked_connection_is_closed_and_uncounted_at_its_deadline() {
        let timeout = Duration::from_millis(700);
        let (watch, mut resumed) = parking_watch(timeout);
        let proxy = proxy();
        let (client, parked) = connection(&proxy).await;
        let began = wait_and_park(&watch, 0, parked).await;
        assert!(closed(client).await, "closed, not reset or left open");
        assert!(
            began.elapsed() >= timeout,
            "closed after {:?}",
            began.elapsed()
        );
        assert_eq!(watch.parked_now(), 0);
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
        assert!(resumed.try_recv().is_err(), "a close is not resumed");
    }

    #[tokio::test]
    async fn a_stop_closes_parked_connections() {
        let (watch, _resumed) = parking_watch(Duration::from_secs(60));
        let proxy = proxy();
        let (client, parked) = connection(&proxy).await;
        wait_and_park(&watch, 9, parked).await;
        let stopped = Instant::now();
        watch.stop();
        assert!(closed(client).await);
        assert!(
            stopped.elapsed() < Duration::from_secs(1),
            "closed by the stop, not the deadline"
        );
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
        // Nothing parks after the stop: a wait hears it at once.
        assert_eq!(
            poll_once(&mut watch.wait(9, true)),
            Poll::Ready(WaitEnd::Stopping)
        );
    }

    #[tokio::test]
    async fn waits_holding_part_of_a_request_are_not_parked() {
        let timeout = Duration::from_millis(800);
        let (watch, _resumed) = parking_watch(timeout);
        let began = Instant::now();
        // A wait that does not hear the stop (the connection holds part
        // of a request) is never asked.
        let deaf = watch.wait(2, false);
        // One that is asked, and turns it down as part of a request came.
        let mut declined = asked_to_park(&watch, 2).await;
        declined.decline_park();
        assert_eq!(poll_once(&mut declined), Poll::Pending);
        // Both still end at their deadline.
        for wait in [deaf, declined] {
            let (end, lasted) = lasted(wait, began).await;
            assert_eq!(end, WaitEnd::Expired);
            assert!(lasted >= timeout, "ended after {lasted:?}");
        }
        let s = lock(&watch.shards[2]);
        assert_eq!((s.waiting.len, s.parked.len, s.free.len()), (0, 0, 2));
    }

    #[tokio::test]
    async fn a_ticket_that_comes_after_the_deadline_closes_its_connection() {
        let timeout = Duration::from_millis(500);
        let (watch, _resumed) = parking_watch(timeout);
        let proxy = proxy();
        let (client, parked) = connection(&proxy).await;
        let mut wait = asked_to_park(&watch, 4).await;
        let ticket = wait.hand_over();
        drop(wait);
        // The deadline passes while the connection is being handed over.
        tokio::time::sleep(timeout + TICK * 2).await;
        watch.park(ticket, Some(parked));
        assert!(closed(client).await);
        assert_eq!(watch.parked_now(), 0);
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
        let s = lock(&watch.shards[4]);
        assert_eq!((s.waiting.len, s.parked.len, s.free.len()), (0, 0, 1));
    }

    #[tokio::test]
    async fn the_parking_thread_returns_when_the_watch_is_gone() {
        let (watch, mut resumed) = parking_watch(Duration::from_secs(60));
        let proxy = proxy();
        let (_client, parked) = connection(&proxy).await;
        wait_and_park(&watch, 1, parked).await;
        drop(watch);
        // The hook (and the channel's sender in it) goes with the thread.
        let ended = tokio::time::timeout(BOUND, resumed.recv()).await;
        assert!(matches!(ended, Ok(None)), "the thread returned");
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_wait_that_expires_as_it_is_handed_over_frees_its_slot_once() {
        let timeout = Duration::from_millis(500);
        let (watch, _resumed) = parking_watch(timeout);
        let proxy = proxy();
        let (client, parked) = connection(&proxy).await;
        let mut wait = asked_to_park(&watch, 6).await;
        // Expired between the ask and the hand-over.
        tokio::time::sleep(timeout + TICK * 2).await;
        let ticket = wait.hand_over();
        drop(wait);
        let other = watch.wait(6, false);
        watch.park(ticket, Some(parked));
        assert!(closed(client).await);
        assert_eq!(proxy.open_connections.load(Ordering::SeqCst), 0);
        // The slot went back once: the wait begun in between kept its own.
        let s = lock(&watch.shards[6]);
        assert_eq!(
            (s.waiting.len, s.free.len(), s.slots.iter().count()),
            (1, 1, 2)
        );
        drop(s);
        drop(other);
    }

    /// A parked connection costs its slot (and its socket in the kernel).
    #[test]
    fn a_slot_is_56_bytes() {
        assert!(std::mem::size_of::<Slot>() <= 56);
    }
}
