//! A future that is polled only after it has asked to be.
//!
//! The pump waits on its stop signals (`CancellationToken::cancelled()`) in the same `select!`
//! as its reads, so they are polled again every time a read is pending: once per request. A
//! pending `cancelled()` future is a tokio `Notify` waiter, and polling one takes the `Notify`'s
//! lock; the route's stop signal is one token shared by every connection of the route, so that
//! was one shared lock per request on the hot path. [`PollOnWake`] polls the inner future with
//! a waker of its own and afterwards only when that waker was woken: every other poll is an
//! atomic swap and a waker registration, no lock.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use atomic_waker::AtomicWaker;

/// Polls `F` at the first poll and then only after `F` woke its waker.
pub struct PollOnWake<F> {
    inner: F,
    signal: Arc<Signal>,
    /// The waker `inner` is polled with: `signal`'s.
    waker: Waker,
    polled: bool,
}

/// Set by the inner future's waker; passes the wake on to the task.
#[derive(Default)]
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future + Unpin> PollOnWake<F> {
    /// One allocation, made once (per connection, not per request).
    pub fn new(inner: F) -> Self {
        let signal = Arc::new(Signal::default());
        let waker = Waker::from(Arc::clone(&signal));
        PollOnWake { inner, signal, waker, polled: false }
    }
}

impl<F> PollOnWake<F> {
    /// Whether a poll could find the inner future ready: it was never polled, was ready, or
    /// woke since. An atomic load, no lock.
    pub fn may_be_ready(&self) -> bool {
        !self.polled || self.signal.woken.load(Ordering::Acquire)
    }
}

impl<F: Future + Unpin> Future for PollOnWake<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake in between is either seen now or wakes
        // the task again.
        this.signal.task.register(cx.waker());
        if this.polled && !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let result = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
        // Once ready, every poll goes to the inner future again (a fired cancellation stays
        // ready), as if this wrapper were not there.
        this.polled = result.is_pending();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts its polls; ready once `ready` is set, and then wakes the waker it was given.
    struct Counted<'a> {
        polls: &'a AtomicUsize,
        ready: &'a AtomicBool,
        waker: &'a AtomicWaker,
    }

    impl Future for Counted<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            self.waker.register(cx.waker());
            if self.ready.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn polls_the_inner_future_only_after_it_woke() {
        let (polls, ready, inner_waker) = (AtomicUsize::new(0), AtomicBool::new(false), AtomicWaker::new());
        let mut future = PollOnWake::new(Counted { polls: &polls, ready: &ready, waker: &inner_waker });
        let task = Arc::new(Signal::default());
        let task_waker = Waker::from(Arc::clone(&task));
        let mut cx = Context::from_waker(&task_waker);
        for _ in 0..100 {
            assert!(Pin::new(&mut future).poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::Relaxed), 1, "polled once, then left alone until woken");
        assert!(!future.may_be_ready());
        ready.store(true, Ordering::Release);
        inner_waker.wake();
        assert!(future.may_be_ready());
        assert!(task.woken.load(Ordering::Acquire), "the inner wake reaches the task");
        assert!(Pin::new(&mut future).poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_cancellation_is_seen() {
        let token = tokio_util::sync::CancellationToken::new();
        let cancelled = std::pin::pin!(token.cancelled());
        let mut future = PollOnWake::new(cancelled);
        assert!(futures_poll_once(&mut future).await.is_pending());
        let canceller = token.clone();
        tokio::spawn(async move { canceller.cancel() });
        (&mut future).await;
        assert!(futures_poll_once(&mut future).await.is_ready(), "a fired signal stays ready");
    }

    async fn futures_poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *future).poll(cx))).await
    }
}
