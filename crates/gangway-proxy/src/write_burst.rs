//! Writes that leave a worker together.
//!
//! A write to a local socket wakes the process reading the other end (the
//! client, the target) if it sleeps, and waking a process on another CPU
//! costs the writer an inter-processor interrupt: on a virtual machine a
//! trap to the hypervisor, several microseconds. When each of a worker's
//! connections writes the moment it is polled, the user-space work of the
//! next request falls between two writes, long enough for the peer to
//! finish, sleep, and need waking again. So a request's writes wait until
//! the worker's other ready tasks have run ([`take_turn`]): the writes of
//! one pass then go out back to back, and one wake-up serves several.
//!
//! Measured on the 2-CPU machine of bench/ (the proxy on one CPU, the
//! client and target on the other, 64 connections): rescheduling
//! interrupts to the other CPU fell from 0.18 to 0.085 per request, and
//! requests per second rose by 15 to 20 % (bench/README.md, "Writes in
//! bursts").
//!
//! A request among a few others on its worker does not wait: too few
//! writes could join it to pay for the wait (a poll of the reactor and of
//! the request's task). Measured as above: with a wait whenever another
//! request was being served, 8 connections were 2 to 5 % slower than
//! writing at once; from 16 connections on, the wait gains.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

thread_local! {
    /// Requests being served that began on this thread.
    static SERVING: Arc<AtomicUsize> = Arc::default();
}

/// A request being served, counted on the thread it began on until it is
/// dropped (wherever the task runs by then).
#[derive(Debug)]
pub(crate) struct Serving(Arc<AtomicUsize>);

impl Serving {
    /// Counts a request on the current thread.
    pub(crate) fn begin() -> Self {
        let count = SERVING.with(Arc::clone);
        count.fetch_add(1, Ordering::Relaxed);
        Serving(count)
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Up to this many other requests on the worker, a request writes at
/// once: too few writes could join it to pay for the wait.
const FEW: usize = 8;

/// Requests being served that began on the current thread.
fn serving_here() -> usize {
    SERVING.with(|c| c.load(Ordering::Relaxed))
}

/// Called by a request (counted by a [`Serving`]) just before it writes:
/// when more than a few other requests are being served on this worker,
/// lets every task that is ready run first, so that their writes and this
/// one leave together. Returns at once otherwise.
pub(crate) async fn take_turn() {
    if serving_here() > 1 + FEW {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn a_request_is_counted_on_the_thread_it_began_on_until_dropped() {
        let first = Serving::begin();
        let second = Serving::begin();
        assert_eq!(serving_here(), 2);
        // Dropped on another thread (a task that moved): this thread's
        // count still goes down, the other thread's is untouched.
        std::thread::spawn(move || {
            assert_eq!(serving_here(), 0);
            drop(second);
            assert_eq!(serving_here(), 0);
        })
        .join()
        .unwrap();
        assert_eq!(serving_here(), 1);
        drop(first);
        assert_eq!(serving_here(), 0);
    }

    /// Whether a task spawned before `take_turn` ran by the time it returned.
    async fn other_task_ran_first() -> bool {
        let ran = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran);
        let other = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
        take_turn().await;
        let ran_first = ran.load(Ordering::SeqCst);
        other.await.unwrap();
        ran_first
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_alone_writes_at_once() {
        let _me = Serving::begin();
        assert!(!other_task_ran_first().await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_among_a_few_writes_at_once() {
        let _us: Vec<Serving> = (0..=FEW).map(|_| Serving::begin()).collect();
        assert!(!other_task_ran_first().await);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_among_more_lets_the_ready_tasks_run_first() {
        let _us: Vec<Serving> = (0..=FEW + 1).map(|_| Serving::begin()).collect();
        assert!(other_task_ran_first().await);
    }
}
