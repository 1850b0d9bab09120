//! The connections of one core that wait for their next request, in the
//! order they began waiting, so that running out of descriptors closes the
//! oldest waits first: a client that has been silent longest is the one
//! least likely to send again soon, and a burst of new clients does not
//! cost every keep-alive client its connection.
//!
//! Waits are grouped in generations of [`GENERATION_WAITS`]: each has one
//! monoio `Canceller`, and shedding cancels the oldest generation that
//! still has a wait. A wait's [`Ticket`] takes it out of its generation
//! when it ends, however it ends. A drain cancels every generation.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use monoio::io::{CancelHandle, Canceller};

/// Waits per generation: small enough that a shed closes few connections
/// beyond the oldest, large enough that a core with 10,000 idle
/// connections keeps about 150 generations.
pub const GENERATION_WAITS: usize = 64;

struct Generation {
    id: u64,
    canceller: Canceller,
    /// Waits begun in this generation.
    begun: usize,
    /// Waits still going.
    waiting: usize,
}

#[derive(Default)]
struct Inner {
    generations: VecDeque<Generation>,
    next_id: u64,
}

/// The core's waits, oldest generation first.
#[derive(Clone, Default)]
pub struct IdleWaits(Rc<RefCell<Inner>>);

/// One wait's place in its generation, given back when dropped.
pub struct Ticket {
    waits: IdleWaits,
    generation: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.waits.0.borrow_mut();
        if let Some(g) = inner.generations.iter_mut().find(|g| g.id == self.generation) {
            g.waiting -= 1;
        }
        // Generations nobody waits in any more leave from the front (the
        // newest stays, to take the next waits).
        while inner.generations.len() > 1 && inner.generations.front().is_some_and(|g| g.waiting == 0) {
            inner.generations.pop_front();
        }
    }
}

impl IdleWaits {
    /// A new wait: the cancel handle its read waits with, and its ticket.
    pub fn begin(&self) -> (CancelHandle, Ticket) {
        let mut inner = self.0.borrow_mut();
        let full = inner.generations.back().is_none_or(|g| g.begun >= GENERATION_WAITS);
        if full {
            let id = inner.next_id;
            inner.next_id += 1;
            inner.generations.push_back(Generation { id, canceller: Canceller::new(), begun: 0, waiting: 0 });
        }
        let g = inner.generations.back_mut().expect("a generation was just ensured");
        g.begun += 1;
        g.waiting += 1;
        let ticket = Ticket { waits: self.clone(), generation: g.id };
        (g.canceller.handle(), ticket)
    }

    /// Cancels the waits of the oldest generation that still has any;
    /// how many were cancelled (0 when nothing waits).
    pub fn shed_oldest(&self) -> usize {
        let mut inner = self.0.borrow_mut();
        while let Some(g) = inner.generations.pop_front() {
            if g.waiting > 0 {
                let shed = g.waiting;
                // Their tickets find no generation when they drop.
                drop(g.canceller.cancel());
                return shed;
            }
        }
        0
    }

    /// Cancels every wait (the drain).
    pub fn cancel_all(&self) {
        let generations = std::mem::take(&mut self.0.borrow_mut().generations);
        for g in generations {
            drop(g.canceller.cancel());
        }
    }

    /// Waits going on, for tests.
    pub fn waiting(&self) -> usize {
        self.0.borrow().generations.iter().map(|g| g.waiting).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl IdleWaits {
        /// The generations with waits, oldest first: (id, waiting).
        fn live(&self) -> Vec<(u64, usize)> {
            self.0.borrow().generations.iter().filter(|g| g.waiting > 0).map(|g| (g.id, g.waiting)).collect()
        }
    }

    #[test]
    fn the_oldest_waits_are_shed_first() {
        let n = GENERATION_WAITS;
        let waits = IdleWaits::default();
        let mut tickets: Vec<_> = (0..3 * n).map(|_| waits.begin()).collect();
        assert_eq!(waits.live(), vec![(0, n), (1, n), (2, n)]);
        // The oldest generation goes, and only it.
        assert_eq!(waits.shed_oldest(), n);
        assert_eq!(waits.live(), vec![(1, n), (2, n)]);
        // Waits that ended leave their generation (the shed ones too,
        // finding theirs gone); a generation with none left is skipped.
        tickets.drain(..2 * n);
        assert_eq!(waits.live(), vec![(2, n)]);
        assert_eq!(waits.shed_oldest(), n);
        drop(tickets);
        assert_eq!((waits.waiting(), waits.shed_oldest()), (0, 0));
        // New waits start a new generation after a shed.
        let _t = waits.begin();
        assert_eq!(waits.live(), vec![(3, 1)]);
        waits.cancel_all();
        assert_eq!(waits.live(), vec![]);
    }
}
