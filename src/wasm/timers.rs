//! `setTimeout` as the core needs it: a cancellable sleep future (keeps Node alive while a
//! retry is pending) and a callback timer (unref'd, so an idle session never keeps a
//! process alive). Both clear their JS timer when dropped, as gloo's `Timeout` does, and
//! keep the timer id as a `JsValue` because Node returns an object, not a number.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

use super::bindings::{clear_timeout, set_timeout};

#[derive(Default)]
struct SleepState {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Resolves after a delay. If `setTimeout` is unavailable (workerd outside a request) it
/// resolves at once rather than hang forever.
pub struct Sleep {
    state: Rc<SleepState>,
    id: Option<JsValue>,
    _callback: Option<Closure<dyn FnMut()>>,
}

impl Sleep {
    pub fn new(ms: u32) -> Sleep {
        let state = Rc::new(SleepState::default());
        let shared = state.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            shared.fired.set(true);
            if let Some(w) = shared.waker.borrow_mut().take() {
                w.wake();
            }
        });
        let id = set_timeout(callback.as_ref().unchecked_ref(), ms).ok();
        if id.is_none() {
            state.fired.set(true);
        }
        Sleep {
            state,
            id,
            _callback: Some(callback),
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.fired.get() {
            return Poll::Ready(());
        }
        *self.state.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if !self.state.fired.get() {
                clear_timeout(&id);
            }
        }
    }
}

/// A callback timer. The callback never runs inside the `setTimeout` handler itself but in a
/// task spawned from it, so the callback may drop this very handle (the session does, when it
/// re-arms) without freeing a closure that is still executing.
/// The callback a timer will run, shared by the handle (to cancel) and the JS handler.
type Pending = Rc<RefCell<Option<Box<dyn FnOnce()>>>>;

pub struct Timer {
    id: Option<JsValue>,
    pending: Pending,
    _callback: Closure<dyn FnMut()>,
}

impl Timer {
    pub fn new(ms: u32, callback: Box<dyn FnOnce()>) -> Timer {
        let pending: Pending = Rc::new(RefCell::new(Some(callback)));
        let shared = pending.clone();
        let js_callback = Closure::<dyn FnMut()>::new(move || {
            let shared = shared.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let callback = shared.borrow_mut().take();
                if let Some(callback) = callback {
                    callback();
                }
            });
        });
        let id = set_timeout(js_callback.as_ref().unchecked_ref(), ms).ok();
        if let Some(id) = &id {
            unref(id);
        }
        Timer {
            id,
            pending,
            _callback: js_callback,
        }
    }
}

/// Node's timers have `unref()`: the process may exit while only this timer is pending.
fn unref(id: &JsValue) {
    if let Ok(f) = Reflect::get(id, &"unref".into()) {
        if let Some(f) = f.dyn_ref::<Function>() {
            let _ = f.call0(id);
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.pending.borrow_mut().take();
        if let Some(id) = self.id.take() {
            clear_timeout(&id);
        }
    }
}
