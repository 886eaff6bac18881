//! Raw bindings to the few Web APIs we use, all looked up on the global object (never
//! `window`), so they resolve in Node, workerd, Deno, Bun and browsers alike. Written here
//! rather than taken from web-sys: a dozen members, no feature flags, no `instanceof`
//! checks that fail across realms.

use js_sys::{Function, Object, Promise, Uint8Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[derive(Clone)]
    #[wasm_bindgen(js_name = Request)]
    pub type Request;
    #[wasm_bindgen(constructor, js_class = "Request", catch)]
    pub fn new(input: &JsValue, init: &JsValue) -> Result<Request, JsValue>;
    #[wasm_bindgen(method, getter)]
    pub fn url(this: &Request) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn method(this: &Request) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn headers(this: &Request) -> Headers;
    #[wasm_bindgen(method, getter)]
    pub fn signal(this: &Request) -> JsValue;
    #[wasm_bindgen(method, getter)]
    pub fn body(this: &Request) -> JsValue;
    #[wasm_bindgen(method, catch, js_name = clone)]
    pub fn try_clone(this: &Request) -> Result<Request, JsValue>;

    #[derive(Clone)]
    #[wasm_bindgen(js_name = Headers)]
    pub type Headers;
    #[wasm_bindgen(constructor, js_class = "Headers", catch)]
    pub fn new(init: &JsValue) -> Result<Headers, JsValue>;
    #[wasm_bindgen(method, catch)]
    pub fn set(this: &Headers, name: &str, value: &str) -> Result<(), JsValue>;
    #[wasm_bindgen(method)]
    pub fn get(this: &Headers, name: &str) -> Option<String>;
    #[wasm_bindgen(method)]
    pub fn has(this: &Headers, name: &str) -> bool;

    #[derive(Clone)]
    #[wasm_bindgen(js_name = Response)]
    pub type Response;
    #[wasm_bindgen(method, getter)]
    pub fn status(this: &Response) -> u16;
    #[wasm_bindgen(method, getter, js_name = type)]
    pub fn kind(this: &Response) -> String;
    #[wasm_bindgen(method, getter)]
    pub fn headers(this: &Response) -> Headers;
    #[wasm_bindgen(method, getter)]
    pub fn body(this: &Response) -> Option<ReadableStream>;
    #[wasm_bindgen(method, catch)]
    pub fn text(this: &Response) -> Result<Promise, JsValue>;

    pub type ReadableStream;
    #[wasm_bindgen(method, catch, js_name = getReader)]
    pub fn get_reader(this: &ReadableStream) -> Result<StreamReader, JsValue>;

    pub type StreamReader;
    #[wasm_bindgen(method)]
    pub fn read(this: &StreamReader) -> Promise;
    #[wasm_bindgen(method)]
    pub fn cancel(this: &StreamReader) -> Promise;

    pub type ReadResult;
    #[wasm_bindgen(method, getter)]
    pub fn done(this: &ReadResult) -> bool;
    #[wasm_bindgen(method, getter)]
    pub fn value(this: &ReadResult) -> Option<Uint8Array>;

    #[derive(Clone)]
    #[wasm_bindgen(js_name = AbortController)]
    pub type AbortController;
    #[wasm_bindgen(constructor, js_class = "AbortController")]
    pub fn new() -> AbortController;
    #[wasm_bindgen(method, getter)]
    pub fn signal(this: &AbortController) -> AbortSignal;
    #[wasm_bindgen(method)]
    pub fn abort(this: &AbortController);

    #[derive(Clone)]
    pub type AbortSignal;
    #[wasm_bindgen(method, getter)]
    pub fn aborted(this: &AbortSignal) -> bool;
    #[wasm_bindgen(method, js_name = addEventListener)]
    pub fn add_event_listener(this: &AbortSignal, kind: &str, listener: &Function, options: &JsValue);
    #[wasm_bindgen(method, js_name = removeEventListener)]
    pub fn remove_event_listener(this: &AbortSignal, kind: &str, listener: &Function);

    #[wasm_bindgen(js_name = URL)]
    pub type Url;
    #[wasm_bindgen(constructor, js_class = "URL", catch)]
    pub fn new(input: &str) -> Result<Url, JsValue>;
    #[wasm_bindgen(constructor, js_class = "URL", catch)]
    pub fn new_with_base(input: &str, base: &str) -> Result<Url, JsValue>;
    #[wasm_bindgen(method, getter)]
    pub fn href(this: &Url) -> String;

    /// `setTimeout` of the global object; throws in workerd outside a request.
    #[wasm_bindgen(js_name = setTimeout, catch)]
    pub fn set_timeout(handler: &Function, ms: u32) -> Result<JsValue, JsValue>;
    /// A promise seen through `then(onFulfilled, onRejected)` with plain functions.
    pub type Thenable;
    #[wasm_bindgen(method, js_name = then)]
    pub fn then_with(this: &Thenable, on_fulfilled: &Function, on_rejected: &Function) -> Promise;

    /// `setTimeout(handler, ms, a, b)`: the handler receives `a` and `b`.
    #[wasm_bindgen(js_name = setTimeout, catch)]
    pub fn set_timeout_with_slot(handler: &Function, ms: u32, a: u32, b: u32) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(js_name = queueMicrotask)]
    pub fn queue_microtask(callback: &Function);
    #[wasm_bindgen(js_name = clearTimeout)]
    pub fn clear_timeout(id: &JsValue);
}

/// A plain object `{}` to fill with `js_sys::Reflect::set`.
pub fn object() -> Object {
    Object::new()
}
