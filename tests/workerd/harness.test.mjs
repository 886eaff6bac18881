// The log filter every workerd test relies on: a hang, a cross-request settle or any
// cancellation fails a test, except workerd's note that it cancelled a not-yet-started alarm
// run because the object had deleted or moved its alarm (harness.mjs, WORKERD_NOTES).

import assert from "node:assert/strict";
import { test } from "node:test";

import { CROSS_CONTEXT_OR_HANG, Logs } from "./harness.mjs";

test("the log filter keeps every cancellation but workerd's alarm-rescheduling note", () => {
  const logs = new Logs();
  const note =
    "NOSENTRY SQLite alarm handler canceled with requestScheduledAlarm.; scheduledTime = 1796667421.698s; localAlarmState.orDefault(kj::UNIX_EPOCH) = 0ns; actorId = 0cbd";
  logs.push("workerd", "warn", note);
  logs.push("workerd", "warn", "The script will never generate a response.");
  logs.push("workerd", "error", "Error: The operation was canceled.");
  logs.push("workerd", "error", `Uncaught Error: ${note}`);
  logs.push("workerd", "info", "GET /api 200 OK");
  assert.deepEqual(
    logs.matching(CROSS_CONTEXT_OR_HANG).map((l) => l.message),
    ["The script will never generate a response.", "Error: The operation was canceled.", `Uncaught Error: ${note}`],
  );
});
