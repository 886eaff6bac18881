//! Awaiting JavaScript promises and timers without allocating a closure per await.
//!
//! wasm-bindgen's `JsFuture` makes two closures per promise (each a JS function, a table
//! slot and a FinalizationRegistry entry), and a `Closure`-based sleep makes one per timer:
//! on the request path that was most of the per-call cost. Here three callbacks are made
//! once per thread; each await takes a slot in a table, and the callbacks receive the slot
//! as bound (or `setTimeout`) arguments. A generation number per slot makes a late
//! callback for a reused slot harmless.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::bindings::{clear_timeout, set_timeout_with_slot, Thenable};

enum State {
    Free,
    Pending(Option<Waker>),
    Done(Result<JsValue, JsValue>),
    /// The future was dropped before its promise settled; the slot is freed on settlement.
    Abandoned,
}

struct Entry {
    generation: u32,
    state: State,
}

#[derive(Default)]
struct Slots {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl Slots {
    fn alloc(&mut self) -> (u32, u32) {
        match self.free.pop() {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                e.generation = e.generation.wrapping_add(1);
                e.state = State::Pending(None);
                (i, e.generation)
            }
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    state: State::Pending(None),
                });
                ((self.entries.len() - 1) as u32, 0)
            }
        }
    }

    fn release(&mut self, index: u32) {
        self.entries[index as usize].state = State::Free;
        self.free.push(index);
    }
}

struct Callbacks {
    fulfilled: Function,
    rejected: Function,
    timer: Function,
}

thread_local! {
    static SLOTS: RefCell<Slots> = RefCell::new(Slots::default());
    static CALLBACKS: Callbacks = Callbacks {
        fulfilled: Closure::<dyn FnMut(u32, u32, JsValue)>::new(|i, g, v| settle(i, g, Ok(v)))
            .into_js_value()
            .unchecked_into(),
        rejected: Closure::<dyn FnMut(u32, u32, JsValue)>::new(|i, g, v| settle(i, g, Err(v)))
            .into_js_value()
            .unchecked_into(),
        timer: Closure::<dyn FnMut(u32, u32)>::new(|i, g| settle(i, g, Ok(JsValue::UNDEFINED)))
            .into_js_value()
            .unchecked_into(),
    };
}

fn settle(index: u32, generation: u32, result: Result<JsValue, JsValue>) {
    let waker = SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let entry = slots.entries.get_mut(index as usize)?;
        if entry.generation != generation {
            return None;
        }
        match std::mem::replace(&mut entry.state, State::Free) {
            State::Pending(waker) => {
                entry.state = State::Done(result);
                waker
            }
            State::Abandoned => {
                slots.release(index);
                None
            }
            other => {
                entry.state = other;
                None
            }
        }
    });
    if let Some(w) = waker {
        w.wake();
    }
}

fn poll_slot(index: u32, generation: u32, cx: &mut Context<'_>) -> Poll<Result<JsValue, JsValue>> {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let entry = &mut slots.entries[index as usize];
        debug_assert_eq!(entry.generation, generation);
        match &mut entry.state {
            State::Pending(waker) => {
                *waker = Some(cx.waker().clone());
                Poll::Pending
            }
            State::Done(_) => {
                let State::Done(result) = std::mem::replace(&mut entry.state, State::Free) else {
                    unreachable!()
                };
                slots.release(index);
                Poll::Ready(result)
            }
            State::Free | State::Abandoned => Poll::Ready(Err(JsValue::UNDEFINED)),
        }
    })
}

/// Drops interest in a slot: frees it, or leaves it for the pending callback to free.
fn abandon(index: u32, generation: u32, callback_pending: bool) {
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let entry = &mut slots.entries[index as usize];
        if entry.generation != generation || matches!(entry.state, State::Free) {
            return;
        }
        if callback_pending && matches!(entry.state, State::Pending(_)) {
            entry.state = State::Abandoned;
        } else {
            slots.release(index);
        }
    });
}

/// A promise's outcome as a future: `Ok(value)` or `Err(reason)`.
pub struct Settled {
    slot: Option<(u32, u32)>,
}

/// Awaits `promise`.
pub fn settled(promise: &Promise) -> Settled {
    let (index, generation) = SLOTS.with(|s| s.borrow_mut().alloc());
    CALLBACKS.with(|c| {
        let on_ok: Function = c
            .fulfilled
            .bind2(&JsValue::NULL, &index.into(), &generation.into())
            .unchecked_into();
        let on_err: Function = c
            .rejected
            .bind2(&JsValue::NULL, &index.into(), &generation.into())
            .unchecked_into();
        let _ = promise.unchecked_ref::<Thenable>().then_with(&on_ok, &on_err);
    });
    Settled {
        slot: Some((index, generation)),
    }
}

impl Future for Settled {
    type Output = Result<JsValue, JsValue>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((i, g)) = self.slot else {
            return Poll::Ready(Err(JsValue::UNDEFINED));
        };
        let out = poll_slot(i, g, cx);
        if out.is_ready() {
            self.slot = None;
        }
        out
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if let Some((i, g)) = self.slot.take() {
            abandon(i, g, true);
        }
    }
}

/// Resolves after `ms`; dropping it clears the timer. Keeps a Node process alive while
/// pending (it is work a caller awaits). Where `setTimeout` is unavailable (workerd outside
/// a request) it resolves at once rather than hang.
pub struct Sleep {
    slot: Option<(u32, u32)>,
    id: Option<JsValue>,
}

impl Sleep {
    pub fn new(ms: u32) -> Sleep {
        let (index, generation) = SLOTS.with(|s| s.borrow_mut().alloc());
        let id = CALLBACKS.with(|c| set_timeout_with_slot(&c.timer, ms, index, generation).ok());
        if id.is_none() {
            settle(index, generation, Ok(JsValue::UNDEFINED));
        }
        Sleep {
            slot: Some((index, generation)),
            id,
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some((i, g)) = self.slot else {
            return Poll::Ready(());
        };
        match poll_slot(i, g, cx) {
            Poll::Ready(_) => {
                self.slot = None;
                self.id = None;
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some((i, g)) = self.slot.take() {
            if let Some(id) = self.id.take() {
                clear_timeout(&id);
            }
            // The timer is cleared (or already fired): no callback will come for this slot.
            abandon(i, g, false);
        }
    }
}
