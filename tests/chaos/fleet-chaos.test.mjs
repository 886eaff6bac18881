// The chaos fleet (tests/chaos/fleet-chaos.mjs) for a fixed seed and ~35 s in the test
// command; CHAOS_SEED and CHAOS_SECONDS pick another run (a soak:
// `CHAOS_SECONDS=600 bash scripts/test-chaos.sh`). The figures are printed whatever happens;
// the test fails on any broken invariant, naming it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { defaults, runFleetChaos } from "./fleet-chaos.mjs";

const seed = Number(process.env.CHAOS_SEED ?? 1307);
const seconds = Number(process.env.CHAOS_SECONDS ?? 35);

test(`fleet chaos: seed ${seed}, ${seconds} s (CHAOS_SEED, CHAOS_SECONDS)`, { timeout: (seconds + 120) * 1000 }, async (t) => {
  const { figures, violations } = await runFleetChaos({ seed, seconds, pkg: defaults.pkg, log: (line) => t.diagnostic(line) });
  t.diagnostic(`figures: ${JSON.stringify(figures)}`);
  if (process.env.CHAOS_FIGURES) console.error(JSON.stringify(figures, null, 2));
  assert.deepEqual(violations, [], `seed ${seed}: ${violations.join("\n")}`);
  // Every kind of fault happened (the deck deals each in every five).
  for (const kind of ["kill-any", "kill-refresh", "kill-unwritten", "redis-restart", "stall"]) {
    assert.ok(figures.faults[kind] >= 1, `no ${kind} in this run: ${JSON.stringify(figures.faults)}`);
  }
});
