//! The time limit on a target's response head, with one runtime timer per
//! client connection rather than one per request.
//!
//! A new runtime timer is inserted into the timer wheel when first polled
//! and taken out when dropped, each under the wheel's lock: about 500
//! user-space instructions a request in bench case 1's request (callgrind).
//! A timer still in the wheel that is set to a later deadline costs one
//! atomic compare-and-swap instead: the wheel finds the later deadline
//! when it reaches the earlier one and moves the timer on. A request's
//! deadline is its send time plus its pool's limit, so the next request
//! of a connection has a later one (unless its pool's limit is shorter,
//! which costs one registration): the connection keeps its timer from one
//! request to the next.
//!
//! Between requests the timer stays in the wheel with the last request's
//! waker; if its deadline passes then, it wakes that task once for
//! nothing and lets the waker go. A plain-HTTP connection parked idle
//! drops its timer with the rest of its state; a TLS or HTTP/2 one keeps
//! it until it closes (a box of 112 bytes, beside its TLS state).

use std::pin::Pin;
use std::sync::{Mutex, PoisonError};
use tokio::time::{Instant, Sleep};

/// A client connection's timer for its requests' waits on targets.
#[derive(Debug, Default)]
pub(crate) struct ResponseTimer {
    /// `None` until the first request, and while a request has it.
    kept: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl ResponseTimer {
    /// A timer that ends at `deadline`: the connection's own, or a new one
    /// while another request of the connection (an HTTP/2 stream) has it.
    pub(crate) fn start(&self, deadline: Instant) -> Loan<'_> {
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let sleep = match kept {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        Loan {
            home: self,
            sleep: Some(sleep),
        }
    }
}

/// A request's use of the timer; handed back to the connection when
/// dropped.
pub(crate) struct Loan<'a> {
    home: &'a ResponseTimer,
    /// Always `Some` until dropped.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Loan<'_> {
    /// Resolves at the deadline.
    pub(crate) async fn expired(&mut self) {
        match &mut self.sleep {
            Some(sleep) => sleep.await,
            // Not reached (`sleep` is taken only when the loan is dropped);
            // were it, a wait without a timer must not end every request.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let mut kept = self
            .home
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if kept.is_none() {
            *kept = self.sleep.take();
        }
    }
}

#[cfg(test)]
mod tests {
    //! On the runtime's real clock (paused time would need tokio's
    //! test-util, a second build of everything on tokio): a timer never
    //! ends before its deadline, so the lower bounds are exact; the upper
    //! ones only catch a timer that does not end at all.
    use super::*;
    use std::time::Duration;

    const LATE: Duration = Duration::from_secs(5);

    async fn wait(loan: &mut Loan<'_>) -> Duration {
        let start = Instant::now();
        let ended = tokio::time::timeout(LATE, loan.expired()).await;
        assert!(ended.is_ok(), "the timer did not end");
        start.elapsed()
    }

    /// Puts the connection's timer in the wheel for `deadline` (polled
    /// once), and gives it back before it ends.
    async fn register_unended(timer: &ResponseTimer, deadline: Instant) {
        let mut loan = timer.start(deadline);
        let early = tokio::time::timeout(Duration::from_millis(10), loan.expired()).await;
        assert!(early.is_err());
    }

    #[tokio::test]
    async fn the_connections_timer_is_set_again_for_each_request() {
        let timer = ResponseTimer::default();
        let start = Instant::now();
        {
            let mut loan = timer.start(start + Duration::from_millis(50));
            wait(&mut loan).await;
            assert!(start.elapsed() >= Duration::from_millis(50));
        }
        let kept = timer.kept.lock().map(|k| k.is_some()).unwrap_or(false);
        assert!(kept, "the timer goes back to the connection");
        // The kept timer, ended, set again: the whole new wait.
        let mut loan = timer.start(Instant::now() + Duration::from_millis(200));
        assert!(wait(&mut loan).await >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_deadline_moved_later_while_in_the_wheel_is_kept() {
        let timer = ResponseTimer::default();
        let start = Instant::now();
        // In the wheel for 100 ms from now, given back before then.
        register_unended(&timer, start + Duration::from_millis(100)).await;
        // Moved to 400 ms: the wheel reaches 100 ms first and must not end
        // it then.
        let mut loan = timer.start(start + Duration::from_millis(400));
        wait(&mut loan).await;
        assert!(start.elapsed() >= Duration::from_millis(400));
        drop(loan);
        // In the wheel for a minute, then moved earlier (a pool with a
        // shorter limit): ends at the earlier time, not a minute later.
        register_unended(&timer, Instant::now() + Duration::from_secs(60)).await;
        let mut loan = timer.start(Instant::now() + Duration::from_millis(30));
        assert!(wait(&mut loan).await >= Duration::from_millis(30));
    }

    #[tokio::test]
    async fn a_second_request_at_once_gets_its_own_timer() {
        let timer = ResponseTimer::default();
        let start = Instant::now();
        let mut first = timer.start(start + Duration::from_millis(1_500));
        let mut second = timer.start(start + Duration::from_millis(100));
        wait(&mut second).await;
        let second_ended = start.elapsed();
        assert!(second_ended >= Duration::from_millis(100));
        assert!(
            second_ended < Duration::from_millis(1_500),
            "{second_ended:?}"
        );
        drop(second);
        wait(&mut first).await;
        assert!(start.elapsed() >= Duration::from_millis(1_500));
    }
}
