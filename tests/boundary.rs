//! The boundary (src/boundary) natively: inputs encoded as pkg-template/auth_session.js
//! encodes them, outputs read record by record as it reads them. What the machine decides
//! is tested elsewhere; here: every input reaches the machine, every output reaches the
//! driver with its fields in order, handles are kept apart, and no input, however malformed,
//! panics (a panic traps the wasm instance and every session in it) or leaks a secret.
// Native only: proptest and serde_json (tests/common) are native dev-dependencies.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use auth_session::boundary::wire::{Reader, Writer};
use auth_session::boundary::{Boundary, Op, Rec, Ret};
use auth_session::core::json::Json;
use common::*;
use proptest::prelude::*;

/// One decoded output record, fields as strings and numbers in wire order.
#[derive(Debug, Clone, PartialEq)]
enum Field {
    N(f64),
    S(Option<String>),
}

#[derive(Debug, Clone)]
struct Record {
    tag: u8,
    fields: Vec<Field>,
}

impl Record {
    fn n(&self, i: usize) -> f64 {
        match &self.fields[i] {
            Field::N(v) => *v,
            f => panic!("field {i} of {self:?} is {f:?}"),
        }
    }
    fn s(&self, i: usize) -> Option<&str> {
        match &self.fields[i] {
            Field::S(v) => v.as_deref(),
            f => panic!("field {i} of {self:?} is {f:?}"),
        }
    }
    fn text(&self) -> String {
        format!("{:?}", self.fields)
    }
}

struct Out<'a>(Reader<'a>, Vec<Field>);

impl Out<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.0.u8().expect("u8");
        self.1.push(Field::N(v as f64));
        v
    }
    fn u32(&mut self) {
        let v = self.0.u32().expect("u32");
        self.1.push(Field::N(v as f64));
    }
    fn f64(&mut self) {
        let v = self.0.f64().expect("f64");
        self.1.push(Field::N(v));
    }
    fn opt_f64(&mut self) {
        let v = if self.0.bool().unwrap() {
            Some(self.0.f64().unwrap())
        } else {
            None
        };
        self.1.push(Field::N(v.unwrap_or(f64::NAN)));
    }
    fn str(&mut self) {
        let v = self.0.opt_str().expect("string");
        self.1.push(Field::S(v));
    }
    fn info(&mut self) {
        self.str();
        self.opt_f64();
        self.opt_f64();
        self.opt_f64();
    }
    fn error(&mut self) {
        self.str(); // code
        self.str(); // name
        self.str(); // message
        self.u32(); // status
        self.u8(); // retryable
        self.opt_f64(); // retry after
        self.str(); // cause name
        self.str(); // cause code
    }
}

/// Every record of an output, the result last.
fn records(bytes: &[u8]) -> Vec<Record> {
    let mut o = Out(Reader::new(bytes), Vec::new());
    let mut all = Vec::new();
    loop {
        let tag = o.0.u8().expect("a record tag");
        o.1.clear();
        match tag {
            t if t == Rec::Send as u8 => {
                o.u32();
                o.u8();
                o.u8();
                o.str();
                o.str();
                o.str();
                o.str(); // the signing input
                o.str(); // and its algorithm
                o.u32();
            }
            t if t == Rec::Cancel as u8 => o.u32(),
            t if t == Rec::Storage as u8 => {
                o.u8();
                o.u32();
                o.str();
                o.str();
                o.f64();
            }
            t if t == Rec::Settle as u8 || t == Rec::Wake as u8 => {
                o.u32();
                if o.u8() == 2 {
                    o.error();
                }
            }
            t if t == Rec::Event as u8 => match o.u8() {
                3 => o.error(),
                0 => {
                    o.info();
                    o.str();
                }
                _ => o.info(),
            },
            t if t == Rec::Arm as u8 => {
                o.f64();
                o.u8();
            }
            t if t == Rec::Log as u8 => {
                o.u8();
                o.u8();
                o.opt_f64();
                o.opt_f64();
                o.opt_f64();
                o.str();
                o.str();
                o.u8();
            }
            t if t == Ret::Nothing as u8 || t == Ret::Malformed as u8 => {}
            t if t == Ret::Number as u8 => o.f64(),
            t if t == Ret::Text as u8 => o.str(),
            t if t == Ret::Flag as u8 => {
                o.u8();
            }
            t if t == Ret::Info as u8 => o.info(),
            t if t == Ret::Error as u8 => o.error(),
            t if t == Ret::Token as u8 => {
                o.f64();
                o.u32();
            }
            t if t == Ret::Schedule as u8 => {
                o.f64();
                o.f64();
                o.f64();
            }
            t => panic!("unknown record {t}"),
        }
        all.push(Record {
            tag,
            fields: o.1.clone(),
        });
        if tag >= Ret::Nothing as u8 {
            assert!(o.0.u8().is_none(), "bytes after the result record");
            return all;
        }
    }
}

/// An input under construction.
fn input(op: Op, handle: u32) -> Writer {
    let mut w = Writer::default();
    w.u8(op as u8);
    w.u32(handle);
    w
}

/// `value` as auth_session.js's `tree` writes a `JSON.parse`d value.
fn tree(w: &mut Writer, value: &Json) {
    match value {
        Json::Null => w.u8(0),
        Json::Bool(b) => w.u8(1 + *b as u8),
        Json::Number(n) => {
            w.u8(3);
            w.f64(*n);
        }
        Json::String(s) => {
            w.u8(4);
            w.str(s);
        }
        Json::Array(items) => {
            w.u8(5);
            w.u32(items.len() as u32);
            items.iter().for_each(|v| tree(w, v));
        }
        Json::Object(members) => {
            w.u8(6);
            w.u32(members.len() as u32);
            for (k, v) in members {
                w.str(k);
                tree(w, v);
            }
        }
    }
}

struct Options<'a> {
    host: Option<&'a str>,
    credentials: Option<(&'a str, &'a str)>,
    timeout_ms: Option<f64>,
    storage: u8,
}

const DEFAULTS: Options<'static> = Options {
    host: Some(HOST),
    credentials: Some((USER, PASSWORD)),
    timeout_ms: None,
    storage: 0,
};

fn new_input(o: &Options) -> Writer {
    let mut w = input(Op::New, 0);
    w.opt_str(o.host);
    w.opt_str(o.credentials.map(|c| c.0));
    w.opt_str(o.credentials.map(|c| c.1));
    w.opt_f64(None); // refreshMarginSeconds
    w.opt_f64(o.timeout_ms);
    w.opt_f64(Some(0.0)); // retries
    w.opt_f64(None); // maxRetryAfterSeconds
    w.u8(1); // autoRefresh: false
    for _ in 0..3 {
        w.str(""); // paths: not given
    }
    w.opt_str(None); // storageKey
    w.u32(0); // allowedOrigins
    w.u8(0); // allowInsecureHttp
    w.opt_f64(None); // maxResponseBytes
    w.opt_f64(None); // leaseMs
    w.opt_str(Some("tenant-7")); // label
    w.u8(o.storage);
    w.f64(0.5); // seed
    w.u8(0); // no oauth
    w.u8(0); // oauthApi
    w
}

fn step(b: &mut Boundary, w: &Writer) -> Vec<Record> {
    records(b.step(&w.bytes))
}

fn result(records: &[Record]) -> &Record {
    records.last().unwrap()
}

/// A login with the configured credentials, at `EPOCH`: its output.
fn login(b: &mut Boundary, h: u32) -> Vec<Record> {
    let mut w = input(Op::Login, h);
    w.f64(EPOCH as f64);
    w.opt_str(None);
    w.opt_str(None);
    step(b, &w)
}

fn create(b: &mut Boundary, o: &Options) -> u32 {
    let out = step(b, &new_input(o));
    assert_eq!(out.len(), 1, "a new session outputs only its handle: {out:?}");
    assert_eq!(out[0].tag, Ret::Number as u8);
    out[0].n(0) as u32
}

#[test]
fn handles_are_kept_apart_and_reused_after_free() {
    let mut b = Boundary::default();
    let one = create(&mut b, &DEFAULTS);
    let two = create(&mut b, &DEFAULTS);
    assert_eq!((one, two, b.sessions()), (1, 2, 2));
    assert_eq!(result(&step(&mut b, &input(Op::Free, one))).tag, Ret::Nothing as u8);
    assert_eq!(b.sessions(), 1);
    // A freed handle is no session: every input to it is malformed, a second free too.
    assert_eq!(result(&step(&mut b, &input(Op::Idle, one))).tag, Ret::Malformed as u8);
    assert_eq!(result(&step(&mut b, &input(Op::Free, one))).tag, Ret::Malformed as u8);
    assert_eq!(create(&mut b, &DEFAULTS), one);
    for handle in [0, 3, u32::MAX] {
        assert_eq!(
            result(&step(&mut b, &input(Op::Idle, handle))).tag,
            Ret::Malformed as u8
        );
    }
    let idle = step(&mut b, &input(Op::Idle, two));
    assert_eq!((idle[0].tag, idle[0].n(0)), (Ret::Flag as u8, 1.0));
}

#[test]
fn bad_options_are_config_errors_without_the_password() {
    let mut b = Boundary::default();
    for o in [
        Options {
            timeout_ms: Some(f64::NAN),
            ..DEFAULTS
        },
        Options { host: None, ..DEFAULTS },
        Options {
            host: Some("ftp://api.test"),
            ..DEFAULTS
        },
    ] {
        let out = step(&mut b, &new_input(&o));
        let r = result(&out);
        assert_eq!(
            (r.tag, r.s(0), r.s(1)),
            (Ret::Error as u8, Some("CONFIG_ERROR"), Some("ConfigError"))
        );
        assert!(!r.text().contains(CANARY));
    }
    assert_eq!(b.sessions(), 0);
}

#[test]
fn a_login_crosses_out_as_one_send_and_its_reply_settles_with_tokens() {
    let mut b = Boundary::default();
    let h = create(&mut b, &DEFAULTS);
    let out = login(&mut b, h);
    let send = out.iter().find(|r| r.tag == Rec::Send as u8).expect("a send");
    assert_eq!(send.n(1), 0.0, "endpoint: login");
    assert_eq!(send.n(2), 0.0, "wire: JSON");
    assert_eq!(send.s(3), Some(&*format!("{HOST}/auth/login")));
    assert!(
        send.s(4).unwrap().contains(PASSWORD),
        "the password goes in the login body"
    );
    assert_eq!(send.s(5), None, "no bearer on a login");
    assert_eq!((send.s(6), send.s(7)), (None, None), "nothing to sign");
    let arm = out
        .iter()
        .find(|r| r.tag == Rec::Arm as u8)
        .expect("the attempt's deadline");
    assert_eq!(arm.n(1), 1.0, "a caller awaits: the timer keeps the process alive");
    let flight = result(&out);
    assert_eq!(flight.tag, Ret::Number as u8);
    assert!(flight.n(0) > 0.0);
    // Only the login's Send carries the password.
    for r in out.iter().filter(|r| r.tag != Rec::Send as u8) {
        assert!(!r.text().contains(CANARY), "{r:?}");
    }

    let pair = Pair::issued(1, EPOCH);
    let mut w = input(Op::AuthReply, h);
    w.f64(EPOCH as f64 + 20.0);
    w.u32(send.n(0) as u32);
    w.u32(200);
    w.bool(false);
    w.opt_str(None);
    w.opt_str(None);
    w.u8(2);
    tree(&mut w, &parse(&pair.envelope()));
    let out = step(&mut b, &w);
    let settle = out
        .iter()
        .find(|r| r.tag == Rec::Settle as u8)
        .expect("the flight settles");
    assert_eq!((settle.n(0), settle.n(1)), (flight.n(0), 0.0));
    let event = out.iter().find(|r| r.tag == Rec::Event as u8).expect("a tokens event");
    assert_eq!((event.n(0), event.s(1)), (0.0, Some("active")));
    assert_eq!(event.s(5), Some("login"), "the reason");
    assert_eq!(event.n(3), pair.access_expires_at as f64);
    assert_eq!(result(&out).tag, Ret::Nothing as u8);
    for r in &out {
        assert!(
            !r.text().contains(&pair.access) && !r.text().contains(&pair.refresh),
            "{r:?}"
        );
    }

    let mut w = input(Op::Token, h);
    w.f64(EPOCH as f64 + 30.0);
    w.u8(0);
    w.u8(0);
    w.u32(0);
    let out = step(&mut b, &w);
    let token = result(&out);
    assert_eq!((token.tag, token.n(1)), (Ret::Token as u8, 0.0));
    assert!(token.n(0) > 0.0, "the serial of the held pair");
    let text = step(&mut b, &input(Op::TokenText, h));
    assert_eq!(result(&text).s(0), Some(&*pair.access));
}

#[test]
fn an_error_crosses_as_a_descriptor_and_never_carries_the_password() {
    let mut b = Boundary::default();
    let h = create(&mut b, &DEFAULTS);
    let out = login(&mut b, h);
    let io = out.iter().find(|r| r.tag == Rec::Send as u8).unwrap().n(0) as u32;
    let mut w = input(Op::AuthReply, h);
    w.f64(EPOCH as f64 + 20.0);
    w.u32(io);
    w.u32(401);
    w.bool(false);
    w.opt_str(None);
    w.opt_str(None);
    w.u8(2);
    let echo = format!(
        r#"{{"success":false,"error":{{"name":"AuthError","code":"INVALID_CREDENTIALS","message":"bad password {PASSWORD}"}}}}"#
    );
    tree(&mut w, &parse(&echo));
    let out = step(&mut b, &w);
    let settle = out.iter().find(|r| r.tag == Rec::Settle as u8).unwrap();
    assert_eq!(settle.n(1), 2.0, "failed");
    assert_eq!(settle.s(2), Some("INVALID_CREDENTIALS"));
    assert_eq!(settle.n(5), 401.0);
    for r in &out {
        assert!(!r.text().contains(CANARY), "{r:?}");
    }
}

#[test]
fn a_record_with_an_unknown_field_layout_is_read_as_the_machine_reads_json() {
    // The storage path: a record crosses as a tree; an impossible tree is malformed.
    let mut b = Boundary::default();
    let h = create(&mut b, &Options { storage: 1, ..DEFAULTS });
    let mut w = input(Op::Restore, h);
    w.f64(EPOCH as f64);
    let out = step(&mut b, &w);
    let get = out.iter().find(|r| r.tag == Rec::Storage as u8).expect("a storage get");
    assert_eq!(get.n(0), 0.0);
    let pair = Pair::issued(1, EPOCH);
    let mut w = input(Op::StorageReply, h);
    w.f64(EPOCH as f64 + 5.0);
    w.u32(get.n(1) as u32);
    w.u8(1);
    tree(&mut w, &parse(&pair.record()));
    let out = step(&mut b, &w);
    let settle = out
        .iter()
        .find(|r| r.tag == Rec::Settle as u8)
        .expect("restore settles");
    assert_eq!(settle.n(1), 0.0, "done: {out:?}");
}

/// A valid login input with a tree after it, cut at every length: each prefix is either
/// the whole input or malformed, never a panic.
#[test]
fn every_prefix_of_an_input_is_malformed_not_a_panic() {
    let mut b = Boundary::default();
    let h = create(&mut b, &DEFAULTS);
    let mut w = input(Op::AuthReply, h);
    w.f64(EPOCH as f64);
    w.u32(1);
    w.u32(200);
    w.bool(false);
    w.opt_str(Some("Mon, 15 Jan 2024 09:30:00 GMT"));
    w.opt_str(None);
    w.u8(2);
    tree(&mut w, &parse(&Pair::issued(1, EPOCH).envelope()));
    for n in 0..w.bytes.len() {
        let out = step(
            &mut b,
            &Writer {
                bytes: w.bytes[..n].to_vec(),
            },
        );
        assert_eq!(result(&out).tag, Ret::Malformed as u8, "prefix of {n} bytes");
    }
    let whole = step(&mut b, &w);
    assert_eq!(result(&whole).tag, Ret::Nothing as u8);
}

#[test]
fn trees_no_writer_makes_are_refused_without_allocating_or_recursing() {
    let mut b = Boundary::default();
    let h = create(&mut b, &Options { storage: 1, ..DEFAULTS });
    let reply = |body: &[u8]| {
        let mut w = input(Op::StorageReply, h);
        w.f64(EPOCH as f64);
        w.u32(1);
        w.u8(1);
        w.bytes.extend_from_slice(body);
        w
    };
    // An array claiming 2^32 - 1 items, an object claiming more members than the budget.
    let huge_array = [5, 0xff, 0xff, 0xff, 0xff];
    let huge_object = [6, 0x01, 0x00, 0x01, 0x00];
    // Nesting a thousand arrays deep (the writer cuts at 16).
    let deep: Vec<u8> = (0..1000).flat_map(|_| [5u8, 1, 0, 0, 0]).collect();
    // A string that is not UTF-8, a NaN number, an unknown tag.
    let bad_utf8 = [4, 2, 0, 0, 0, 0xff, 0xfe];
    let mut nan = vec![3];
    nan.extend_from_slice(&f64::NAN.to_le_bytes());
    for body in [&huge_array[..], &huge_object, &deep, &bad_utf8, &nan, &[9]] {
        let out = step(&mut b, &reply(body));
        assert_eq!(result(&out).tag, Ret::Malformed as u8);
    }
    // Sixteen levels are what the writer keeps: read.
    let mut ok: Vec<u8> = (0..16).flat_map(|_| [5u8, 1, 0, 0, 0]).collect();
    ok.push(0);
    assert_ne!(result(&step(&mut b, &reply(&ok))).tag, Ret::Malformed as u8);
}

#[test]
fn unknown_opcodes_are_malformed() {
    let mut b = Boundary::default();
    let h = create(&mut b, &DEFAULTS);
    for op in [34u8, 200, 255] {
        let mut w = Writer::default();
        w.u8(op);
        w.u32(h);
        assert_eq!(result(&step(&mut b, &w)).tag, Ret::Malformed as u8);
    }
    assert_eq!(result(&step(&mut b, &Writer::default())).tag, Ret::Malformed as u8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Any bytes after a real opcode and handle: an output that ends in exactly one result,
    /// and the session still answers afterwards.
    #[test]
    fn arbitrary_inputs_never_panic(op in 0u8..40, tail in proptest::collection::vec(any::<u8>(), 0..96)) {
        let mut b = Boundary::default();
        let h = create(&mut b, &Options { storage: 2, ..DEFAULTS });
        let mut w = input(Op::Idle, h);
        w.bytes[0] = op;
        w.bytes.extend_from_slice(&tail);
        let out = step(&mut b, &w);
        prop_assert!(result(&out).tag >= Ret::Nothing as u8);
        let alive = if op == Op::Free as u8 { create(&mut b, &DEFAULTS) } else { h };
        let info = step(&mut b, &input(Op::Info, alive));
        prop_assert_eq!(result(&info).tag, Ret::Info as u8);
    }
}
