// The `logger` hook (issue 9): structured records of every auth call, retry and refresh
// with its trigger — and never a secret (canaries: the password and every token issued).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";

import { AuthSession, DEMO, assertNoSecrets, useServer } from "./helpers.mjs";

const server = useServer();

describe("logger", () => {
  it("records logins, requests, responses, retries and refresh triggers, and no secret", async () => {
    const records = [];
    const tokens = new Set();
    // Learn every token from the wire, to look for it in the records.
    const wire = async (input, init) => {
      const res = await fetch(input, init);
      if (String(input).includes("/auth/") && res.ok) {
        const body = await res.clone().json().catch(() => null);
        for (const k of ["access_token", "refresh_token"]) if (body?.data?.[k]) tokens.add(body.data[k]);
      }
      return res;
    };
    const session = new AuthSession({
      host: server.url,
      credentials: DEMO,
      autoRefresh: false,
      retries: 2,
      fetch: wire,
      logger: (r) => records.push(r),
    });
    await session.json("/api/v1/products"); // first use: a login standing in for a refresh
    await session.refresh(); // manual
    server.expireAccessTokens();
    await session.json("/api/v1/products"); // 401 -> refresh
    server.fault({ path: "/auth/refresh" }, { status: 503, body: "busy" }, 1);
    await session.refresh(); // one retry
    session.dispose();

    const events = records.map((r) => [r.event, r.endpoint ?? r.trigger, r.status ?? r.attempt ?? r.code]);
    assert.deepEqual(events.slice(0, 3), [
      ["login", "margin", undefined],
      ["request", "login", 0],
      ["response", "login", 200],
    ]);
    const triggers = records.filter((r) => r.event === "refresh").map((r) => r.trigger);
    assert.deepEqual(triggers, ["manual", "401", "manual"]);
    const retry = records.find((r) => r.event === "retry");
    assert.equal(retry.endpoint, "refresh");
    assert.equal(retry.attempt, 1);
    assert.equal(retry.code, "SERVER_ERROR");
    assert.equal(typeof retry.delayMs, "number");
    assert.ok(records.some((r) => r.event === "response" && r.status === 503 && r.code === "SERVER_ERROR"));
    assert.ok(records.every((r) => r.time instanceof Date));
    assert.ok(tokens.size >= 4);
    assertNoSecrets(
      [JSON.stringify(records), inspect(records, { depth: Infinity })],
      [DEMO.password, DEMO.username === "demo" ? "demo-password" : DEMO.password, ...tokens],
      "logger records",
    );
  });

  it("a logger that throws changes nothing; a logger that is not a function is a CONFIG_ERROR", async () => {
    const session = new AuthSession({
      host: server.url,
      credentials: DEMO,
      autoRefresh: false,
      logger: () => {
        throw new Error("logger down");
      },
    });
    assert.equal((await session.json("/api/v1/products")).length, 4);
    session.dispose();
    assert.throws(() => new AuthSession({ host: server.url, logger: "console" }), (e) => e.code === "CONFIG_ERROR");
  });
});
