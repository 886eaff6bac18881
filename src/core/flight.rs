//! Single-flight: one auth call (login or refresh) in progress, any number of waiters.
//!
//! The call itself runs as its own task (see `Session::start_flight`), so no waiter owns it:
//! a waiter that gives up (its AbortSignal fired, its request ended) leaves the call running
//! for everyone else. Waiters hold a slot in a waker table instead of a growing list, so
//! 10,000 waiters polled any number of times cost 10,000 slots.
//!
//! A platform may supply a [`Signal`] instead: JavaScript uses one promise per flight, so each
//! waiter resumes from its own promise reaction. Cloudflare's workerd needs that: a request
//! woken from inside another request's work is cancelled as hung.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::core::error::AuthError;
use crate::core::platform::LocalFuture;

/// An external "it is done" for a flight, fired once on completion.
pub trait Signal {
    fn fire(&self);
    /// Resolves once `fire` has been called (at once if it already was).
    fn fired(&self) -> LocalFuture<()>;
}

/// What a waiter learns: the call finished (`Ok`: look at the session again) or failed.
pub type FlightResult = Result<(), AuthError>;

#[derive(Default)]
struct Inner {
    result: Option<FlightResult>,
    wakers: Vec<Option<Waker>>,
    signal: Option<Rc<dyn Signal>>,
}

/// One auth call in progress. Cloning shares it.
#[derive(Clone, Default)]
pub struct Flight(Rc<RefCell<Inner>>);

impl Flight {
    pub fn new() -> Self {
        Flight::default()
    }

    /// A flight whose waiters wait on `signal` (when given) rather than on wakers.
    pub fn with_signal(signal: Option<Rc<dyn Signal>>) -> Self {
        let flight = Flight::default();
        flight.0.borrow_mut().signal = signal;
        flight
    }

    pub fn is_done(&self) -> bool {
        self.0.borrow().result.is_some()
    }

    /// Records the outcome and wakes every waiter. A second call is ignored.
    pub fn complete(&self, result: FlightResult) {
        let (wakers, signal) = {
            let mut inner = self.0.borrow_mut();
            if inner.result.is_some() {
                return;
            }
            inner.result = Some(result);
            (std::mem::take(&mut inner.wakers), inner.signal.clone())
        };
        for waker in wakers.into_iter().flatten() {
            waker.wake();
        }
        if let Some(signal) = signal {
            signal.fire();
        }
    }

    /// A future for the outcome.
    pub fn wait(&self) -> Wait {
        Wait {
            flight: self.clone(),
            slot: None,
            fired: None,
        }
    }

    /// Pointer identity: is this the same call?
    pub fn same(&self, other: &Flight) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    #[cfg(test)]
    fn slots(&self) -> usize {
        self.0.borrow().wakers.len()
    }
}

pub struct Wait {
    flight: Flight,
    slot: Option<usize>,
    fired: Option<LocalFuture<()>>,
}

impl Future for Wait {
    type Output = FlightResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<FlightResult> {
        let this = &mut *self;
        let signal = {
            let inner = this.flight.0.borrow();
            if let Some(result) = &inner.result {
                return Poll::Ready(result.clone());
            }
            inner.signal.clone()
        };
        if let Some(signal) = signal {
            let fired = this.fired.get_or_insert_with(|| signal.fired());
            return match fired.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.fired = None;
                    match &this.flight.0.borrow().result {
                        Some(result) => Poll::Ready(result.clone()),
                        None => Poll::Pending,
                    }
                }
                Poll::Pending => Poll::Pending,
            };
        }
        let mut inner = this.flight.0.borrow_mut();
        match this.slot {
            Some(i) => match &mut inner.wakers[i] {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            },
            None => {
                this.slot = Some(inner.wakers.len());
                inner.wakers.push(Some(cx.waker().clone()));
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        // A waiter that leaves frees its waker (it may hold a whole request's state alive).
        if let Some(i) = self.slot {
            if let Ok(mut inner) = self.flight.0.try_borrow_mut() {
                if let Some(slot) = inner.wakers.get_mut(i) {
                    *slot = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::task::noop_waker;

    #[test]
    fn every_waiter_gets_the_same_result_and_repolls_reuse_their_slot() {
        let f = Flight::new();
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut waits: Vec<Wait> = (0..100).map(|_| f.wait()).collect();
        for _ in 0..3 {
            for w in &mut waits {
                assert!(Pin::new(w).poll(&mut cx).is_pending());
            }
        }
        assert_eq!(f.slots(), 100);
        f.complete(Err(AuthError::from_status(503)));
        f.complete(Ok(()));
        for w in &mut waits {
            match Pin::new(w).poll(&mut cx) {
                Poll::Ready(Err(e)) => assert_eq!(e.code(), "SERVER_ERROR"),
                _ => panic!("expected the first result"),
            }
        }
        assert!(f.is_done());
    }

    /// A signal as JavaScript has it: one "promise" that every waiter polls on its own.
    #[derive(Default)]
    struct TestSignal {
        fired: std::cell::Cell<bool>,
        wakers: RefCell<Vec<Waker>>,
    }

    impl Signal for Rc<TestSignal> {
        fn fire(&self) {
            self.fired.set(true);
            for w in self.wakers.borrow_mut().drain(..) {
                w.wake();
            }
        }
        fn fired(&self) -> LocalFuture<()> {
            let me = self.clone();
            Box::pin(std::future::poll_fn(move |cx| {
                if me.fired.get() {
                    Poll::Ready(())
                } else {
                    me.wakers.borrow_mut().push(cx.waker().clone());
                    Poll::Pending
                }
            }))
        }
    }

    #[test]
    fn with_a_signal_waiters_wait_on_it_instead_of_wakers() {
        let signal = Rc::new(TestSignal::default());
        let f = Flight::with_signal(Some(Rc::new(signal.clone())));
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut waits: Vec<Wait> = (0..10).map(|_| f.wait()).collect();
        for w in &mut waits {
            assert!(Pin::new(w).poll(&mut cx).is_pending());
        }
        assert_eq!(f.slots(), 0, "no waker slots: the signal wakes them");
        assert_eq!(signal.wakers.borrow().len(), 10);
        f.complete(Ok(()));
        assert!(signal.fired.get());
        for w in &mut waits {
            assert!(matches!(Pin::new(w).poll(&mut cx), Poll::Ready(Ok(()))));
        }
    }
}
