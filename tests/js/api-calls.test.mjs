// API calls driven by the machine (issue 12): every defect found in 0.2.0's driver, each as
// the attack that showed it. Each test fails on 0.2.0 and passes now.
//   - json() resolved to the raw Response on a 3xx it did not follow;
//   - a `fetch` option that throws synchronously hung login()/refresh()/revoke() and
//     bricked the session (DISPOSED "internal error");
//   - a `fetch` that ignores its AbortSignal made fetch()/json() never time out, and
//     neither the caller's abort nor dispose() settled them;
//   - an API 503 with Retry-After over maxRetryAfterSeconds was SERVER_ERROR, not
//     RATE_LIMITED; AuthError.retryAfter did not exist;
//   - logger records did not cover API calls; the `label` option did not exist.
import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { AuthSession, DEMO, fakeTokenEnvelope, jsonResponse, rejectsWith, useServer } from "./helpers.mjs";
import { within, expectCode } from "./attack-helpers.mjs";

const server = useServer();

/** A fetch for a fake host: auth calls get a pair, API calls go to `api`. */
function fakeFetch(api) {
  const calls = { auth: 0, api: 0 };
  const fn = (input, init) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    if (url.pathname.startsWith("/auth/")) {
      calls.auth++;
      return Promise.resolve(jsonResponse(fakeTokenEnvelope()));
    }
    calls.api++;
    return api(url, init ?? {}, calls.api);
  };
  return { fetch: fn, calls };
}

const HOST = "https://api.example.test";

describe("json() on a redirect it does not follow", () => {
  it("rejects REDIRECT_BLOCKED with the 3xx status for another origin; fetch() returns the 3xx", async () => {
    server.fault({ path: "/api/v1/products" }, { redirect: "https://elsewhere.example/steal", status: 302 }, 2);
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const err = await rejectsWith(session.json("/api/v1/products"), { code: "REDIRECT_BLOCKED", status: 302, retryable: false });
    assert.match(err.message, /^GET \/api\/v1\/products: /);
    const res = await session.fetch("/api/v1/products");
    assert.equal(res.status, 302, "fetch() hands the redirect back");
    session.dispose();
  });

  it("rejects HTTP_ERROR for a redirect loop, and for a 3xx without a Location", async () => {
    const loop = fakeFetch((url) =>
      Promise.resolve(new Response(null, { status: 302, headers: { location: url.pathname } })),
    );
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: loop.fetch, autoRefresh: false });
    await rejectsWith(session.json("/v1/loop"), { code: "HTTP_ERROR", status: 302, retryable: false });
    assert.equal(loop.calls.api, 21, "20 redirects followed, then the loop is an error");
    const bare = fakeFetch(() => Promise.resolve(new Response(null, { status: 301 })));
    const other = new AuthSession({ host: HOST, credentials: DEMO, fetch: bare.fetch, autoRefresh: false });
    await rejectsWith(other.json("/v1/moved"), { code: "HTTP_ERROR", status: 301, retryable: false });
    session.dispose();
    other.dispose();
  });
});

describe("a fetch option that throws synchronously", () => {
  it("fails login(), refresh() and revoke() with NETWORK_ERROR and leaves the session usable", async () => {
    let broken = true;
    const fetchFn = (input, init) => {
      if (broken) throw new TypeError("synchronous failure");
      return globalThis.fetch(input, init);
    };
    const session = new AuthSession({ host: server.url, credentials: DEMO, fetch: fetchFn, retries: 0, autoRefresh: false });
    expectCode(await within(session.login(), 3000, "login"), "NETWORK_ERROR", "login");
    broken = false;
    await session.login();
    broken = true;
    expectCode(await within(session.refresh(), 3000, "refresh"), "NETWORK_ERROR", "refresh");
    expectCode(await within(session.json("/api/v1/products"), 3000, "json"), "NETWORK_ERROR", "json");
    await within(session.revoke(), 3000, "revoke");
    broken = false;
    await session.login();
    assert.ok(Array.isArray(await session.json("/api/v1/products")), "the session still works");
    session.dispose();
  });

  it("a storage adapter that throws synchronously is a storage failure, never the session's", async () => {
    const storage = {
      get() {
        throw new Error("sync get");
      },
      put() {
        throw new Error("sync put");
      },
      delete() {
        throw new Error("sync delete");
      },
    };
    const session = new AuthSession({ host: server.url, credentials: DEMO, storage, autoRefresh: false });
    const errors = [];
    session.on("error", (e) => errors.push(e.code));
    await session.login();
    assert.ok(Array.isArray(await session.json("/api/v1/products")));
    // revoke() reports the storage that failed to forget the pair; the session goes on.
    await rejectsWith(session.revoke(), { code: "STORAGE_ERROR", retryable: false });
    assert.ok(errors.includes("STORAGE_ERROR"));
    await session.login();
    assert.ok(Array.isArray(await session.json("/api/v1/products")));
    session.dispose();
  });

  it("a listener that calls back into the session synchronously does not break it", async () => {
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    const seen = [];
    session.on("tokens", () => {
      seen.push(session.info.state);
      session.getAccessToken().then(() => seen.push("token"));
    });
    await session.login();
    await session.refresh();
    assert.ok(Array.isArray(await session.json("/api/v1/products")));
    assert.deepEqual(seen.filter((s) => s === "active"), ["active", "active"]);
    assert.ok(seen.includes("token"));
    session.dispose();
  });
});

describe("a fetch option that ignores its AbortSignal", () => {
  const deaf = () => fakeFetch(() => new Promise(() => {}));

  it("json() and fetch() settle with TIMEOUT at the attempt's deadline", async () => {
    const f = deaf();
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, timeoutMs: 150, retries: 0, autoRefresh: false });
    await session.login();
    const outcome = await within(session.json("/v1/items"), 2000, "json()");
    const err = expectCode(outcome, "TIMEOUT", "json()");
    assert.match(err.message, /^GET \/v1\/items: /);
    assert.ok(outcome.ms >= 140 && outcome.ms < 1500, `${outcome.ms} ms`);
    expectCode(await within(session.fetch("/v1/items"), 2000, "fetch()"), "TIMEOUT", "fetch()");
    session.dispose();
  });

  it("idempotent calls are retried after each deadline, then fail", async () => {
    const f = deaf();
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, timeoutMs: 100, retries: 2, autoRefresh: false });
    await session.login();
    expectCode(await within(session.json("/v1/items"), 5000, "json()"), "TIMEOUT", "json()");
    assert.equal(f.calls.api, 3);
    session.dispose();
  });

  it("the caller's abort settles the call at once with ABORTED", async () => {
    const f = deaf();
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, timeoutMs: 60_000, autoRefresh: false });
    await session.login();
    const ctrl = new AbortController();
    const call = within(session.json("/v1/items", { signal: ctrl.signal }), 1000, "aborted json()");
    setTimeout(() => ctrl.abort(), 20);
    const err = expectCode(await call, "ABORTED", "abort");
    assert.match(err.message, /^GET \/v1\/items: /);
    session.dispose();
  });

  it("dispose() settles every call in flight with DISPOSED", async () => {
    const f = deaf();
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, timeoutMs: 60_000, autoRefresh: false });
    await session.login();
    const calls = [session.json("/v1/a"), session.fetch("/v1/b"), session.json("/v1/c", { method: "POST", json: {} })];
    await new Promise((r) => setTimeout(r, 20));
    session.dispose();
    for (const [i, call] of calls.entries()) expectCode(await within(call, 1000, `call ${i}`), "DISPOSED", `call ${i}`);
  });

  it("a body that never ends fails json() at the deadline", async () => {
    const f = fakeFetch(
      () =>
        new Response(
          new ReadableStream({
            start(c) {
              c.enqueue(new TextEncoder().encode('{"success":true,'));
            },
          }),
          { status: 200, headers: { "content-type": "application/json" } },
        ),
    );
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, timeoutMs: 150, retries: 0, autoRefresh: false });
    await session.login();
    expectCode(await within(session.json("/v1/items"), 2000, "json()"), "TIMEOUT", "json()");
    session.dispose();
  });
});

describe("Retry-After over maxRetryAfterSeconds on an API call", () => {
  it("json() fails at once with RATE_LIMITED, its status and retryAfter kept; fetch() returns the response unretried", async () => {
    server.fault({ path: "/api/v1/products" }, { status: 503, headers: { "retry-after": "120" } }, 2);
    const session = new AuthSession({ host: server.url, credentials: DEMO, autoRefresh: false });
    await session.login();
    const started = Date.now();
    const err = await rejectsWith(session.json("/api/v1/products"), { code: "RATE_LIMITED", status: 503 });
    assert.equal(err.retryAfter, 120);
    assert.equal(JSON.parse(JSON.stringify(err)).retryAfter, 120, "part of toJSON()");
    assert.ok(Date.now() - started < 1000, "at once");
    const res = await session.fetch("/api/v1/products");
    assert.equal(res.status, 503);
    assert.equal(server.stats.faults, 2, "no retry for either call");
    session.dispose();
  });

  it("errors made from a 429 or 5xx carry retryAfter; others do not", async () => {
    const f = fakeFetch((url, init) =>
      Promise.resolve(
        url.pathname === "/v1/busy"
          ? jsonResponse({ success: false, error: { code: "BUSY", message: "later" } }, 503, { "retry-after": "7" })
          : jsonResponse({ success: false, error: { code: "NOPE", message: "no" } }, 400, { "retry-after": "7" }),
      ),
    );
    const session = new AuthSession({ host: HOST, credentials: DEMO, fetch: f.fetch, autoRefresh: false });
    const busy = await rejectsWith(session.json("/v1/busy", { method: "POST", json: {} }), {
      code: "BUSY",
      name: "ServerError",
      status: 503,
      retryable: true,
    });
    assert.equal(busy.retryAfter, 7);
    const nope = await rejectsWith(session.json("/v1/nope"), { code: "NOPE", name: "ServerError", status: 400, retryable: false });
    assert.equal(nope.retryAfter, undefined);
    assert.equal("retryAfter" in JSON.parse(JSON.stringify(nope)), false);
    session.dispose();
  });
});

describe("logger records of API calls and the label option", () => {
  it("records request, response, retry and redirect for API calls, each with the session's label", async () => {
    server.fault({ path: "/api/v1/products" }, { status: 503, headers: { "retry-after": "0" } }, 1);
    server.fault({ path: "/api/v1/old" }, { redirect: "https://elsewhere.example/", status: 302 }, 1);
    const records = [];
    const events = [];
    const session = new AuthSession({
      host: server.url,
      credentials: DEMO,
      autoRefresh: false,
      label: "tenant-7",
      logger: (r) => records.push(r),
    });
    session.on("tokens", (info) => events.push(info));
    await session.login();
    await session.json("/api/v1/products");
    await session.json("/api/v1/old").catch(() => {});
    const api = records.filter((r) => r.endpoint === "api").map((r) => [r.event, r.status ?? r.attempt]);
    assert.deepEqual(api, [
      ["request", 0],
      ["response", 503],
      ["retry", 1],
      ["request", 1],
      ["response", 200],
      ["request", 0],
      ["response", 302],
      ["redirect", 302],
    ]);
    const retry = records.find((r) => r.event === "retry" && r.endpoint === "api");
    assert.equal(retry.code, "SERVER_ERROR");
    assert.equal(retry.delayMs, 0);
    assert.equal(records.find((r) => r.event === "redirect").followed, false);
    assert.ok(records.every((r) => r.label === "tenant-7"));
    assert.equal(events[0].label, "tenant-7");
    session.dispose();
  });

  it("a label that is not a short string is a CONFIG_ERROR", () => {
    for (const label of [42, "x".repeat(65), "a\nb"]) {
      assert.throws(() => new AuthSession({ host: HOST, label }), (e) => e.code === "CONFIG_ERROR", String(label));
    }
  });
});
