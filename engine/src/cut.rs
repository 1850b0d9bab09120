//! The end of a drain, as one core's requests see it: when the drain's
//! time is up, every request still waiting on an upstream stops waiting,
//! ends its answer (a stream with an error event and `[DONE]`), and goes
//! through the pipeline's exit like any other, so it is recorded and
//! billed for what it used. Without it, the worker's runtime would drop
//! those requests mid-await: no record, no spend, a truncated body.
//!
//! One core, one thread: a `Cell` and the wakers of the waits in progress,
//! no atomics. A wait removes its waker when dropped, so a long stream
//! (one wait per upstream read) leaves nothing behind.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// How long requests cut at the drain's end have to write their last
/// bytes and their records, before the worker closes.
pub const CUT_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// How long a request may go on after the cut before the pipeline stops
/// it wherever it waits (connecting or writing upstream, a strict
/// reservation, the body, a slow client) and sends it to its exit: half
/// the grace, so that its record is written before the worker closes.
pub const STUCK_AFTER_CUT: std::time::Duration = std::time::Duration::from_millis(250);

/// A core's "stop waiting" signal.
#[derive(Default)]
pub struct Cut {
    fired: Cell<bool>,
    /// Wakers of the waits in progress, by slot; freed slots are reused.
    waiters: RefCell<Vec<Option<Waker>>>,
    /// Slots free for the next wait (so registering costs O(1) however
    /// many streams wait).
    free: RefCell<Vec<usize>>,
}

impl Cut {
    /// Ends every wait in progress and every one to come.
    pub fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = self.waiters.borrow_mut().iter_mut().filter_map(Option::take).collect();
        for w in wakers {
            w.wake();
        }
    }

    pub fn fired(&self) -> bool {
        self.fired.get()
    }

    /// Runs `fut` until it completes (`Some`) or the cut fires (`None`,
    /// `fut` dropped, as a time-out drops it).
    pub async fn or<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut fut = std::pin::pin!(fut);
        let mut wait = Wait { cut: self, slot: None };
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(Some(v));
            }
            match Pin::new(&mut wait).poll(cx) {
                Poll::Ready(()) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }
}

/// One wait for the cut.
struct Wait<'c> {
    cut: &'c Cut,
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.cut.fired() {
            return Poll::Ready(());
        }
        let mut waiters = self.cut.waiters.borrow_mut();
        let waker = Some(cx.waker().clone());
        match self.slot {
            Some(i) => waiters[i] = waker,
            None => {
                let i = match self.cut.free.borrow_mut().pop() {
                    Some(free) => {
                        waiters[free] = waker;
                        free
                    }
                    None => {
                        waiters.push(waker);
                        waiters.len() - 1
                    }
                };
                drop(waiters);
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            if let Some(w) = self.cut.waiters.borrow_mut().get_mut(i) {
                *w = None;
            }
            self.cut.free.borrow_mut().push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_the_cut_fires_and_leaves_no_waker_behind() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("runtime");
        rt.block_on(async {
            let cut = std::rc::Rc::new(Cut::default());
            // Completes first: the cut does not matter.
            assert_eq!(cut.or(async { 7 }).await, Some(7));
            assert!(cut.waiters.borrow().iter().all(Option::is_none), "a finished wait unregisters");
            let c = cut.clone();
            let waiting = monoio::spawn(async move { c.or(std::future::pending::<()>()).await });
            monoio::time::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(cut.waiters.borrow().iter().flatten().count(), 1);
            cut.fire();
            assert_eq!(waiting.await, None);
            assert_eq!(cut.or(async { 1 }).await, Some(1), "what is ready still completes");
            assert_eq!(cut.or(std::future::pending::<()>()).await, None, "later waits end at once");
        });
    }
}
