//! Runs the streams of one HTTP/2 client connection inside the
//! connection's own task.
//!
//! hyper hands every new HTTP/2 stream to an executor. Spawning each one
//! as a runtime task puts a hundred tasks per busy connection in one
//! worker's run queue; once a worker holds more than its local queue's
//! 256 slots, the rest overflow to the shared queue, which the worker
//! looks at only every 61 polls, and those streams wait many times longer
//! than the others (measured on one core, 10 connections x 100 streams:
//! p50 4 ms, p99 130 ms). Kept in their connection's task, a connection's
//! streams are served in turn each time the connection runs and the
//! runtime only orders connections, as an event loop per connection does
//! (nginx, Envoy): the same work, without the long tail, and without a
//! task allocation per stream.

use futures_util::stream::{FuturesUnordered, StreamExt};
use futures_util::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The executor one connection's hyper builder is given: it queues the
/// connection's new streams for [`serve_with_streams`] to run.
#[derive(Clone, Default)]
pub(crate) struct StreamExecutor {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Streams hyper started since the connection's task last took them.
    new: Mutex<Vec<StreamFuture>>,
    /// The connection's task, woken when a stream arrives from elsewhere
    /// (hyper starts streams while the connection is polled, so this is a
    /// safeguard, not the usual path).
    task: AtomicWaker,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.shared
            .new
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::pin(stream));
        self.shared.task.wake();
    }
}

/// Drives `connection` and the streams it hands to `executor` together,
/// until the connection has ended and its last stream has finished.
pub(crate) async fn serve_with_streams<C: Future>(
    connection: C,
    executor: StreamExecutor,
) -> C::Output {
    let mut connection = std::pin::pin!(connection);
    let mut ended = None;
    let mut streams = FuturesUnordered::<StreamFuture>::new();
    std::future::poll_fn(move |cx: &mut Context<'_>| {
        executor.shared.task.register(cx.waker());
        loop {
            if ended.is_none() {
                if let Poll::Ready(output) = connection.as_mut().poll(cx) {
                    ended = Some(output);
                }
            }
            let started = {
                let mut new = executor
                    .shared
                    .new
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let started = !new.is_empty();
                streams.extend(new.drain(..));
                started
            };
            // Every stream that is ready runs once; each one woken again
            // while running waits for the next turn (FuturesUnordered
            // yields then), so one stream cannot hold the connection.
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            // Streams just started have sent their first frames through
            // the connection: poll it again at once rather than on the
            // next turn. Otherwise every stream is waiting on something.
            if !started {
                break;
            }
        }
        match ended.take() {
            Some(output) if streams.is_empty() => Poll::Ready(output),
            output => {
                ended = output;
                Poll::Pending
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn runs_streams_started_by_the_connection_and_waits_for_them() {
        let executor = StreamExecutor::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let connection = {
            let executor = executor.clone();
            let done = Arc::clone(&done);
            async move {
                for _ in 0..3 {
                    let done = Arc::clone(&done);
                    executor.execute(async move {
                        tokio::task::yield_now().await;
                        done.fetch_add(1, Ordering::SeqCst);
                    });
                }
                let done = Arc::clone(&done);
                executor.execute(async move {
                    let _ = released.await;
                    done.fetch_add(1, Ordering::SeqCst);
                });
                "ended"
            }
        };
        let served = tokio::spawn(serve_with_streams(connection, executor));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!served.is_finished(), "a stream is still running");
        assert_eq!(done.load(Ordering::SeqCst), 3);
        let _ = release.send(());
        assert_eq!(served.await.ok(), Some("ended"));
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_stream_started_from_outside_wakes_the_connection() {
        let executor = StreamExecutor::default();
        let (ran, ran_rx) = tokio::sync::oneshot::channel::<()>();
        let (end, ended) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_with_streams(
            async move {
                let _ = ended.await;
            },
            executor.clone(),
        ));
        tokio::task::yield_now().await;
        executor.execute(async move {
            let _ = ran.send(());
        });
        assert!(ran_rx.await.is_ok());
        let _ = end.send(());
        assert!(served.await.is_ok());
    }
}
