//! What a bug costs: panics caught where they can be settled.
//!
//! Bad input is answered with a 4xx, never a panic; a panic is a bug. It
//! must still cost one request, not a core: a connection's task is caught
//! whole ([`crate::conn`]), and a request's phases are caught inside it
//! ([`crate::pipeline::run`]), so that a request that panics after its
//! provider had it is recorded and billed like one whose upstream failed
//! (`end: gateway_fault`), its client answered 500 where nothing of its
//! answer was written yet (reset where part of it was), and its holds let
//! go through the same exit as every other request. What the provider may
//! have is `Trace::with_provider`, kept by the upstream phase as each
//! attempt goes out and is settled. Without the inner catch the request's record was
//! never written and its spend never counted: the provider billed work the
//! tenant's budget never saw.
//!
//! Debug builds can panic on purpose ([`inject`]) so that the end-to-end
//! tests reach these paths through the real binary.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A future whose panics are caught: `Err` with the panic's message in
/// place of its output. It must not be polled after it returned.
pub struct Caught<F>(pub F);

impl<F: Future> Future for Caught<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: the only field is pinned structurally: it is never moved
        // out of `self`, and `Caught` has no `Drop` of its own.
        let inner = unsafe { self.map_unchecked_mut(|c| &mut c.0) };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(why) => Poll::Ready(Err(message(&*why))),
        }
    }
}

/// A panic's message, where it has one.
fn message(why: &(dyn std::any::Any + Send)) -> String {
    why.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| why.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// The body marker a request carries to be panicked on (debug builds).
#[cfg(debug_assertions)]
pub const MARK: &[u8] = b"tollgate-debug-panic";

/// Debug builds only: panics at `point` when `TOLLGATE_DEBUG_PANIC` names
/// it and the request's body holds [`MARK`], so that a test can make one
/// request of many fail there. Release builds have no such points.
#[cfg(debug_assertions)]
pub fn inject(point: &str, body: &[u8]) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("TOLLGATE_DEBUG_PANIC").ok());
    if at.as_deref() == Some(point) && memchr::memmem::find(body, MARK).is_some() {
        panic!("TOLLGATE_DEBUG_PANIC at {point}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future>(f: F) -> Poll<F::Output> {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        f.as_mut().poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_panic_is_the_caught_futures_output_with_its_message() {
        let done = poll_once(Caught(async { 7 }));
        assert!(matches!(done, Poll::Ready(Ok(7))));
        let fixed = poll_once(Caught(async { panic!("plain") }));
        assert!(matches!(fixed, Poll::Ready(Err(ref m)) if m == "plain"), "{fixed:?}");
        let formatted = poll_once(Caught(async {
            let n = 3;
            panic!("formatted {n}")
        }));
        assert!(matches!(formatted, Poll::Ready(Err(ref m)) if m == "formatted 3"), "{formatted:?}");
    }
}
