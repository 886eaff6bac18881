//! The auto-refresh timer: a callback on `setTimeout`, unref'd so an idle session never
//! keeps a process alive, cleared when dropped as gloo's `Timeout` is, its id kept as a
//! `JsValue` because Node returns an object, not a number. (Sleeps are in `wake`.)

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

use super::bindings::{clear_timeout, set_timeout};

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
            super::executor::spawn(
                Box::pin(async move {
                    let callback = shared.borrow_mut().take();
                    if let Some(callback) = callback {
                        callback();
                    }
                }),
                None,
            );
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
