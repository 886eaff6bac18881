//! A task executor for the wasm layer, in place of wasm-bindgen-futures.
//!
//! Two properties matter, both for Cloudflare's workerd, which ties every promise and every
//! piece of I/O to the request whose code created it:
//!
//! * **One microtask per task wake-up.** wasm-bindgen-futures runs every woken task in one
//!   batch, so request B's continuation could run inside request A's microtask and start its
//!   I/O there. Here each wake queues that task alone, from the code that woke it — which, for
//!   a waiter of a shared refresh, is its own reaction to the flight's promise (see
//!   `JsSignal`), in its own request.
//! * **Background work joins the caller's `waitUntil` as it starts.** A task spawned while
//!   another runs (a refresh flight, a storage write) inherits the running task's
//!   `waitUntil`, which receives a promise for it at once: the request that starts a refresh
//!   stays alive until the refresh is done, even if it has nothing left to wait for.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;

use super::bindings::queue_microtask;
use super::options::WaitUntil;
use super::wake::settled;
use crate::core::flight::Signal;
use crate::core::LocalFuture;

struct Task {
    future: RefCell<Option<LocalFuture<()>>>,
    queued: Cell<bool>,
    wait_until: Option<WaitUntil>,
    waker: Waker,
}

#[derive(Default)]
struct Tasks {
    slots: Vec<(u32, Option<std::rc::Rc<Task>>)>,
    free: Vec<u32>,
}

thread_local! {
    static TASKS: RefCell<Tasks> = RefCell::new(Tasks::default());
    static RUN: Function = Closure::<dyn FnMut(u32, u32)>::new(run).into_js_value().unchecked_into();
    /// The `waitUntil` of the task being polled, inherited by what it spawns.
    static CURRENT: RefCell<Option<WaitUntil>> = const { RefCell::new(None) };
}

/// A waker is a task's slot and generation: plain numbers, so it is `Send + Sync` as `Waker`
/// requires, while the task itself (JS values) stays on this thread.
struct TaskWaker(u32, u32);

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        schedule(self.0, self.1);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        schedule(self.0, self.1);
    }
}

fn schedule(index: u32, generation: u32) {
    let task = TASKS.with(|t| match t.borrow().slots.get(index as usize) {
        Some((g, Some(task))) if *g == generation => Some(task.clone()),
        _ => None,
    });
    if let Some(task) = task {
        if !task.queued.replace(true) {
            RUN.with(|run| {
                let bound: Function = run
                    .bind2(&JsValue::NULL, &index.into(), &generation.into())
                    .unchecked_into();
                queue_microtask(&bound);
            });
        }
    }
}

fn run(index: u32, generation: u32) {
    let task = TASKS.with(|t| match t.borrow().slots.get(index as usize) {
        Some((g, Some(task))) if *g == generation => Some(task.clone()),
        _ => None,
    });
    let Some(task) = task else { return };
    task.queued.set(false);
    let Some(mut future) = task.future.borrow_mut().take() else {
        return;
    };
    let outer = CURRENT.with(|c| c.replace(task.wait_until.clone()));
    let done = future.as_mut().poll(&mut Context::from_waker(&task.waker)).is_ready();
    CURRENT.with(|c| *c.borrow_mut() = outer);
    if done {
        TASKS.with(|t| {
            let mut t = t.borrow_mut();
            t.slots[index as usize].1 = None;
            t.free.push(index);
        });
    } else {
        *task.future.borrow_mut() = Some(future);
    }
}

/// Runs `future` to completion in its own task, first polled in a microtask.
pub fn spawn(future: LocalFuture<()>, wait_until: Option<WaitUntil>) {
    TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                t.slots.push((0, None));
                (t.slots.len() - 1) as u32
            }
        };
        let generation = t.slots[index as usize].0.wrapping_add(1);
        let task = Task {
            future: RefCell::new(Some(future)),
            queued: Cell::new(false),
            wait_until,
            waker: Waker::from(Arc::new(TaskWaker(index, generation))),
        };
        t.slots[index as usize] = (generation, Some(std::rc::Rc::new(task)));
        drop(t);
        schedule(index, generation);
    });
}

/// Spawns background work from inside a running task: it inherits that task's `waitUntil`,
/// which is handed a promise for it right away.
pub fn spawn_background(future: LocalFuture<()>) {
    let wait_until = CURRENT.with(|c| c.borrow().clone());
    match wait_until {
        Some(w) => {
            let (promise, resolve, _) = new_promise();
            spawn(
                Box::pin(async move {
                    future.await;
                    let _ = resolve.call0(&JsValue::UNDEFINED);
                }),
                Some(w.clone()),
            );
            w.call(&promise);
        }
        None => spawn(future, None),
    }
}

/// A promise settled by `future`'s result (what an exported async method returns).
pub fn promise<F>(future: F, wait_until: Option<WaitUntil>) -> Promise
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let (promise, resolve, reject) = new_promise();
    spawn(
        Box::pin(async move {
            let _ = match future.await {
                Ok(v) => resolve.call1(&JsValue::UNDEFINED, &v),
                Err(e) => reject.call1(&JsValue::UNDEFINED, &e),
            };
        }),
        wait_until,
    );
    promise
}

fn new_promise() -> (Promise, Function, Function) {
    let mut fns = None;
    let promise = Promise::new(&mut |resolve, reject| fns = Some((resolve, reject)));
    let (resolve, reject) = fns.expect("the Promise executor runs synchronously");
    (promise, resolve, reject)
}

/// A flight's completion as one JavaScript promise, created by the task that starts the
/// flight and awaited by every waiter through its own reaction.
pub struct JsSignal {
    promise: Promise,
    resolve: Function,
}

impl JsSignal {
    pub fn new() -> JsSignal {
        let (promise, resolve, _) = new_promise();
        JsSignal { promise, resolve }
    }
}

impl Signal for JsSignal {
    fn fire(&self) {
        let _ = self.resolve.call0(&JsValue::UNDEFINED);
    }

    fn fired(&self) -> LocalFuture<()> {
        let settled = settled(&self.promise);
        Box::pin(async move {
            let _ = settled.await;
        })
    }
}
