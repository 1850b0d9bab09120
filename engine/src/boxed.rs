//! Futures boxed where they are made.
//!
//! `Box::pin(f(args))` builds `f`'s future on the stack and then copies it
//! into the heap, whole: its size is that of its largest state, not of the
//! arguments it starts with, so each such call copied kilobytes that were
//! never written (a governed request made 14 KB of these copies, 1,500
//! instructions, 2.5% of its work at 100 B:
//! `bench/scripts/callgrind-gateway.sh`).
//! [`boxed`] allocates first and has the future written into its box: the
//! compiler then builds it there (checked by the copies' sizes in the
//! binary, `mov edx, <size>` before `memcpy`, which are gone).

use std::future::Future;
use std::pin::Pin;

/// `Box::pin(make())`, with the future written into its box instead of
/// copied there.
#[inline(always)]
pub fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    let mut b = Box::<F>::new_uninit();
    b.write(make());
    // SAFETY: written on the line above.
    Box::into_pin(unsafe { b.assume_init() })
}
