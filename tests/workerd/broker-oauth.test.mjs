// auth-session/workers in OAuth 2.0 mode, in workerd through Miniflare, against a real
// authorization server: oidc-provider (tests/oauth/provider.mjs) with rotating refresh tokens
// and reuse detection, and its protected API (opaque access tokens, introspected per call).
// One broker script exports AuthBroker with `sessionOptions` returning `{ host, oauth }`
// (fixtures/broker-worker.mjs, in OAuth 2.0 mode by its bindings); four client scripts (each its own isolate) call the API
// through `brokeredSession(namespace, { name, host, oauth: true })`.
//
// What must hold:
// 1. refresh_token (a public client's rotating refresh token, seeded by a real authorization
//    code flow, handed to the broker as a binding; the token endpoint found by discovery):
//    over 5+ access-token lifetimes of continuous calls from 4 isolates, no failed call, no
//    reuse of a spent refresh token (and no invalid_grant at all), one refresh at the
//    provider per rotation of the broker (rotations at the tokens' pace, not 4 × that), and
//    nothing in workerd's log that means a broken single-flight or a hang.
// 2. client_credentials on a cold broker: 100 concurrent calls over the 4 isolates make
//    exactly one token request at the provider.
//
// Run by scripts/test-workerd.sh (Node 22: Miniflare needs it). WORKERD_TEST_VERBOSE=1
// prints what workerd logs; BROKER_TEST_FIGURES=1 prints each run's figures.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { obtainRefreshToken, startProvider } from "../oauth/provider.mjs";
import { Logs, bundleWorker, compatibilityDate, sleep, startBrokerCluster, tempDir, within, clientGet, assertCleanLogs, loadStreams, JWT, brokerStatus, isolateStats, tally, report, assertAll200 } from "./harness.mjs";

const fixture = fileURLToPath(new URL("./fixtures/broker-worker.mjs", import.meta.url));

/** oidc-provider's access token lifetime (whole seconds: `exp` = floor(issue) + TTL, so a
 *  token lives TTL - 1 to TTL seconds; the package anchors `expires_in` to the whole-second
 *  `Date`, so it knows the same instant). */
const ACCESS_TTL_S = 3;
/** The broker's alarm refreshes 0.5 s before expiry; isolates ask 0.25 s before. A refresh at
 *  exp - 0.5 s is issued in the second before exp, so its token expires TTL - 1 s after the
 *  one it replaces: one rotation every TTL - 1 = 2 s. */
const BROKER_MARGIN_S = 0.5;
const CLIENT_MARGIN_S = 0.25;
const ROTATION_MS = (ACCESS_TTL_S - 1) * 1000;
const CLIENTS = ["c1", "c2", "c3", "c4"];
const STREAMS = 8;
const REQUEST_TIMEOUT_MS = 10_000;
const BURST = 100;

let tmp;
let modules;
let compat;
before(async () => {
  tmp = await tempDir("auth-session-broker-oauth-");
  compat = await compatibilityDate();
  modules = await within(60_000, bundleWorker({ entry: fixture, outdir: `${tmp.dir}/fixture/bundle` }), "bundle the fixture");
});
after(() => tmp?.cleanup());

/**
 * One provider (`providerOptions`), one cluster whose broker's OAuth 2.0 client is
 * `brokerVars(as)` (bindings), torn down after the test.
 */
async function setup(t, { providerOptions, brokerVars }) {
  const as = await within(10_000, startProvider(providerOptions), "provider start");
  const logs = new Logs();
  const store = await tempDir("auth-session-oauth-do-");
  const env = { as, logs, cluster: null };
  // Registered before anything can fail, so a failed start still releases the provider.
  t.after(async () => {
    if (env.cluster) await within(30_000, env.cluster.mf.dispose(), "Miniflare dispose").catch(() => {});
    await within(10_000, as.close(), "provider close").catch(() => {});
    await store.cleanup();
  });
  env.cluster = await startBrokerCluster({
    modules,
    serverUrl: as.api.url,
    persist: store.dir,
    logs,
    clients: CLIENTS,
    brokerMarginS: BROKER_MARGIN_S,
    clientMarginS: CLIENT_MARGIN_S,
    brokerVars: await brokerVars(as),
    clientVars: { OAUTH_API: "1" },
    compatibilityDate: compat,
  });
  return env;
}

const get = (url, pathname = "/read") => clientGet(url, pathname, REQUEST_TIMEOUT_MS);



/** Every call answered 200 with the API's own JSON (no envelope), for `clientId` (and `sub`). */
function assertAllRead(results, label, { clientId, sub }) {
  assertAll200(results, label);
  for (const r of results) {
    const body = JSON.parse(r.text);
    assert.deepEqual(
      { ok: body.ok, method: body.method, path: body.path, sub: body.sub, client_id: body.client_id },
      { ok: true, method: "GET", path: "/api/read", sub, client_id: clientId },
      `${label}: ${r.text}`,
    );
  }
}

/** The broker's RPC answers that were not "ok" (for failure messages). */
const brokerFailures = (logs) =>
  logs.lines
    .map((l) => /auth-broker: rpc (.*)/.exec(l.message)?.[1])
    .filter((c) => c && !c.endsWith("-> ok"));

const load = (env, ms, during) => loadStreams({ urls: () => env.cluster.urls, get, streams: STREAMS, ms, during });


const invalidGrants = (as) => as.stats.tokenErrors.invalid_grant ?? 0;

describe("auth-session/workers: an OAuth 2.0 broker against oidc-provider", () => {
  test(
    `oauth broker: rotating refresh token, ${STREAMS} streams on ${CLIENTS.length} isolates for 5+ token lifetimes: one refresh per rotation, no reuse, no failure`,
    { timeout: 60_000 },
    async (t) => {
      let seed;
      const env = await setup(t, {
        providerOptions: { accessTokenTtl: ACCESS_TTL_S },
        brokerVars: async (as) => {
          // A real user's consent (authorization code + PKCE, offline_access), by the public
          // client: the broker holds its refresh token, and nothing else holds it.
          seed = await within(10_000, obtainRefreshToken(as, { client: "public" }), "obtain the refresh token");
          return {
            OAUTH_ISSUER: as.issuer, // the token endpoint by discovery
            OAUTH_CLIENT_ID: as.clients.public.client_id,
            OAUTH_REFRESH_TOKEN: seed.refresh_token,
          };
        },
      });
      const { as } = env;
      assert.equal(as.stats.tokenRequests.refresh_token, 0, "nothing refreshed before the run");
      // 16 s at an access-token lifetime of 3 s (each token really lives 2–3 s).
      const runMs = 16_000;
      const lifetimes = runMs / (ACCESS_TTL_S * 1000);
      const results = await load(env, runMs);
      const broker = await brokerStatus(env);
      const stats = await isolateStats(env);
      const refreshRequests = as.stats.tokenRequests.refresh_token;
      const figures = {
        isolates: stats.length,
        streams: STREAMS,
        calls: results.length,
        failed: results.filter((r) => r.status !== 200).length,
        lifetimes,
        brokerVersion: broker.version,
        providerRefreshRequests: refreshRequests,
        providerRefreshes: as.stats.refreshes,
        reuseDetected: as.stats.reuseDetected,
        invalidGrant: invalidGrants(as),
        tokenErrors: as.stats.tokenErrors,
        otherGrants: as.stats.tokenRequests.client_credentials + as.stats.tokenRequests.other,
        apiAccepted: as.stats.api.accepted,
        apiRefused: as.stats.api.refused,
        isolatePairsFromBroker: stats.map((s) => s.login + s.refresh),
        brokerFailures: brokerFailures(env.logs).slice(0, 5),
      };
      report("broker-oauth: refresh_token", figures);
      t.diagnostic(JSON.stringify(figures));

      assertAllRead(results, "refresh_token run", { clientId: as.clients.public.client_id, sub: Object.keys(as.users)[0] });
      assert.ok(results.length >= 100, `only ${results.length} calls in ${runMs} ms`);
      // Every call reached the API with a token it accepted, at the first try: `expires_in`
      // counts from the answer's whole-second `Date`, so no token is held past the
      // provider's `exp` (counted from our own clock, one was, for up to a second: a 401,
      // a refresh and a replay each time, 26–31 per run).
      assert.ok(as.stats.api.accepted >= results.length, `API accepted ${as.stats.api.accepted} of ${results.length} calls`);
      assert.equal(as.stats.api.refused, 0, "the API refused a token the session held as valid");
      // No spent refresh token presented again, and no invalid_grant of any kind.
      assert.equal(as.stats.reuseDetected, 0, "oidc-provider detected a refresh token reuse");
      assert.equal(invalidGrants(as), 0, `invalid_grant at the provider: ${JSON.stringify(as.stats.invalidGrantDetails)}`);
      assert.deepEqual(as.stats.tokenErrors, {}, "the provider refused a token request");
      assert.equal(as.stats.grantsRevoked, 0, "the grant was revoked");
      // One refresh at the provider per version of the broker (the seed's first use is
      // version 1), every one of them answered.
      assert.equal(refreshRequests, broker.version, `provider refresh requests ${refreshRequests} vs broker version ${broker.version}`);
      assert.equal(as.stats.refreshes, refreshRequests, "a refresh request failed");
      assert.equal(figures.otherGrants, 0, "a grant other than refresh_token was used");
      // Rotations at the tokens' pace: at least one per lifetime, at most one per rotation
      // period (+ the seed's use, a boundary and a refresh or two asked by an isolate after
      // an API 401) — 4 isolates refreshing on their own would make about 4 × as many.
      assert.ok(refreshRequests >= Math.floor(lifetimes), `only ${refreshRequests} refreshes in ${lifetimes} lifetimes`);
      assert.ok(
        refreshRequests <= Math.ceil(runMs / ROTATION_MS) + 4,
        `${refreshRequests} refreshes in ${runMs} ms: more than one per ${ROTATION_MS} ms rotation`,
      );
      // Every isolate took part: a pair from the broker at first, then the rotations; no error.
      for (const s of stats) {
        assert.equal(s.login, 1, `isolate ${s.isolate} got its first pair ${s.login} times`);
        assert.ok(s.refresh >= Math.floor(lifetimes) - 2, `isolate ${s.isolate} followed ${s.refresh} rotations`);
        assert.equal(s.errors, 0, `isolate ${s.isolate}: ${JSON.stringify(s.lastErrors)}`);
        assert.equal(s.expired, 0);
      }
      assert.equal(broker.state, "active");
      assert.equal(broker.error, null);
      assertCleanLogs(env.logs);
    },
  );

  test(`oauth broker: client_credentials, ${BURST} concurrent calls over ${CLIENTS.length} isolates on a cold broker: one token request`, { timeout: 45_000 }, async (t) => {
    const env = await setup(t, {
      // Long-lived tokens: no refresh can fall inside the burst, so every grant counted is the cold start's.
      providerOptions: { accessTokenTtl: 60 },
      brokerVars: async (as) => ({
        OAUTH_TOKEN_ENDPOINT: as.tokenEndpoint,
        OAUTH_CLIENT_ID: as.clients.basic.client_id,
        OAUTH_CLIENT_SECRET: as.clients.basic.client_secret,
      }),
    });
    const { as } = env;
    const cc = () => as.stats.tokenRequests.client_credentials;
    assert.equal(cc(), 0, "the broker was not cold");
    const { urls } = env.cluster;
    const started = Date.now();
    const results = await within(30_000, Promise.all(Array.from({ length: BURST }, (_, i) => get(urls[i % urls.length]))), "burst");
    const burstMs = Date.now() - started;
    const broker = await brokerStatus(env);
    const stats = await isolateStats(env);
    const figures = {
      calls: results.length,
      failed: results.filter((r) => r.status !== 200).length,
      burstMs,
      perIsolate: Object.values(tally(results.map((r) => ({ status: r.isolate })))),
      clientCredentialsRequests: cc(),
      clientCredentialsIssued: as.stats.tokenIssued.client_credentials,
      otherTokenRequests: as.stats.tokenRequests.refresh_token + as.stats.tokenRequests.authorization_code + as.stats.tokenRequests.other,
      tokenErrors: as.stats.tokenErrors,
      brokerVersion: broker.version,
      apiAccepted: as.stats.api.accepted,
      apiRefused: as.stats.api.refused,
      isolatePairsFromBroker: stats.map((s) => s.login + s.refresh),
      brokerFailures: brokerFailures(env.logs).slice(0, 5),
    };
    report("broker-oauth: client_credentials", figures);
    t.diagnostic(JSON.stringify(figures));

    assertAllRead(results, "client_credentials burst", { clientId: as.clients.basic.client_id, sub: null });
    assert.equal(new Set(results.map((r) => r.isolate)).size, CLIENTS.length, "every isolate served calls");
    assert.equal(cc(), 1, `${cc()} client_credentials token requests for ${BURST} concurrent calls`);
    assert.equal(as.stats.tokenIssued.client_credentials, 1);
    assert.equal(figures.otherTokenRequests, 0, "another grant was used");
    assert.deepEqual(as.stats.tokenErrors, {});
    assert.equal(broker.version, 1, "the broker got more than one pair");
    assert.equal(broker.state, "active");
    // One token for every call: each accepted the first time, no 401 and replay.
    assert.equal(as.stats.api.accepted, BURST);
    assert.equal(as.stats.api.refused, 0);
    for (const s of stats) {
      assert.equal(s.login, 1, `isolate ${s.isolate} got its pair ${s.login} times`);
      assert.equal(s.refresh, 0);
      assert.equal(s.errors, 0, `isolate ${s.isolate}: ${JSON.stringify(s.lastErrors)}`);
    }
    assertCleanLogs(env.logs);
  });
});
