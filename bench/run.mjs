// The benchmark: auth-session against raw fetch, two hand-written clients (the floor: no
// timeouts, retries or error taxonomy; and one with auth-session's contract on the measured
// paths), ky, axios + axios-auth-refresh and @supabase/auth-js. Run it through `bash bench/run.sh [--quick]`,
// which installs what this needs first; see bench/README.md for what each figure means.
//
//   node bench/run.mjs [--quick] [--only size,startup,throughput,storm,memory,leak]
//
// Prints a table per figure, writes bench/results.json (git-ignored) and bench/chart.svg.
// Every comparison runs the contenders interleaved in the same run (each in a fresh child
// process) against one reference server in its own process, and reports ratios.
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync, constants as zconst } from "node:zlib";
import { renderChart } from "./lib/chart.mjs";
import { LABELS } from "./lib/contenders.mjs";
import { median, max, rotate, fmt, table } from "./lib/util.mjs";

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const rootDir = path.dirname(benchDir);
const workerPath = path.join(benchDir, "lib", "worker.mjs");
const serverPath = path.join(benchDir, "lib", "server-child.mjs");

// ---------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
if (argv.includes("-h") || argv.includes("--help")) {
  console.log(`usage: bash bench/run.sh [--quick] [--only FIGURES]
  --quick         ~1 minute smoke run (fewer rounds, shorter rounds, smaller sizes)
  --only LIST     comma-separated subset of: size,startup,throughput,storm,memory,leak
environment: BENCH_SKIP_BUILD=1 (run.sh: use the pkg/ already built), AUTH_SESSION_PKG_DIR`);
  process.exit(0);
}
const quick = argv.includes("--quick");
const onlyArg = argv.find((a) => a.startsWith("--only"));
const onlyValue = onlyArg?.includes("=") ? onlyArg.split("=")[1] : onlyArg ? argv[argv.indexOf(onlyArg) + 1] : null;
const FIGURES = ["size", "startup", "throughput", "storm", "memory", "leak"];
const only = new Set(onlyValue ? onlyValue.split(",").map((s) => s.trim()) : FIGURES);
for (const f of only) if (!FIGURES.includes(f)) throw new Error(`--only: unknown figure ${f}`);

const CONFIG = quick
  ? {
      startupRuns: 15,
      throughput: { rounds: 1, durationMs: 500, warmupMs: 200, concurrencies: [1, 16, 256] },
      storm: { sizes: [100, 1000], roundsFor: () => 1 },
      memory: { sessions: [1000] },
      rttSamples: 5,
    }
  : {
      startupRuns: 21,
      throughput: { rounds: 3, durationMs: 2000, warmupMs: 500, concurrencies: [1, 16, 256] },
      storm: { sizes: [100, 1000, 10000], roundsFor: (n) => (n >= 10000 ? 1 : 2) },
      memory: { sessions: [1000, 10000] },
      rttSamples: 9,
    };
const JOB_TIMEOUT_MS = 240_000;

// Issue 12 ("Targets"): measured against the hand-written client of the same contract
// (contenders/contract.mjs); the floor client (contenders/handwritten.mjs) is reported beside it.
const GOALS = {
  sizeGzipBytes: 20_000, // wasm + glue + driver of the Node entry, JS minified, gzip -9
  startupVsContractMs: 3, // import + construct in process, at most this much over the contract client (ESM and CJS)
  throughputRatio: 1.0, // req/s × the contract client in the same round, at every concurrency
  cpuVsContract: 1.0, // client CPU per request, × the contract client, at every concurrency
  stormSlackMs: 5, // time ≤ valid-token time + one refresh round trip + 5 ms
  memoryBeyondTokens: 2048, // bytes per idle session beyond the token bytes
};

// ---------------------------------------------------------------------------------------
// Child processes: tracked, killed on exit or Ctrl-C.

const children = new Set();
let interrupted = false;
let shuttingDown = false; // set once the figures are done: the server's exit is expected

function killAll(signal = "SIGTERM") {
  for (const child of children) {
    try {
      child.kill(signal);
    } catch {}
  }
}
process.on("exit", () => killAll("SIGKILL"));
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
  process.on(sig, () => {
    if (interrupted) return;
    interrupted = true;
    process.stderr.write(`\nbench: ${sig}: stopping ${children.size} child process(es) (server, running job)\n`);
    killAll("SIGTERM");
    setTimeout(() => {
      killAll("SIGKILL");
      process.exit(130);
    }, 1500).unref();
    // Exit as soon as every child is gone.
    const check = setInterval(() => {
      if (children.size === 0) process.exit(130);
    }, 50);
    check.unref();
  });
}

function track(child) {
  children.add(child);
  child.on("exit", () => children.delete(child));
  return child;
}

async function startServerProcess() {
  const child = track(
    spawn(process.execPath, [serverPath], { cwd: benchDir, stdio: ["ignore", "pipe", "inherit", "ipc"] }),
  );
  child.channel?.unref();
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("the server did not start within 20 s")), 20_000);
    child.stdout.on("data", (d) => {
      buf += d;
      const m = /BENCH_SERVER_URL=(\S+)/.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code}) before it listened`));
    });
  });
  child.on("exit", (code, signal) => {
    if (!interrupted && !shuttingDown) {
      process.stderr.write(`bench: the server process died (${code ?? signal})\n`);
    }
  });
  return { child, url };
}

/** Runs one worker job in a fresh process; resolves its result, or `{ error }`. */
function runJob(job, { timeoutMs = JOB_TIMEOUT_MS } = {}) {
  return new Promise((resolve) => {
    if (interrupted) return resolve({ error: "interrupted" });
    const child = track(
      spawn(process.execPath, ["--expose-gc", workerPath, JSON.stringify(job)], {
        cwd: benchDir,
        stdio: ["ignore", "pipe", "pipe", "ipc"],
      }),
    );
    child.channel?.unref();
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split("\n").pop();
      let parsed = null;
      try {
        parsed = JSON.parse(line);
      } catch {}
      if (parsed?.ok) return resolve(parsed.result);
      const why = parsed?.error ?? (signal === "SIGKILL" ? `timed out after ${timeoutMs / 1000} s` : `exit ${code ?? signal}: ${err.trim().split("\n").slice(-3).join(" | ")}`);
      resolve({ error: String(why).split("\n")[0] });
    });
  });
}

const startupFailures = [];
// NODE_EXTRA_CA_CERTS makes every node process parse a CA bundle before any user code runs
// (~150 ms on this machine, and as noisy): the scripts do no TLS, so it is left out.
const STARTUP_ENV = { ...process.env };
delete STARTUP_ENV.NODE_EXTRA_CA_CERTS;
delete STARTUP_ENV.NODE_OPTIONS;

/** Runs a script in a fresh node process; returns what it prints: `total` (ms since the
 *  process started) and `inProcess` (ms from just before its import to after the constructor). */
function runStartup(file) {
  return new Promise((resolve) => {
    const child = track(spawn(process.execPath, [file], { cwd: benchDir, env: STARTUP_ENV, stdio: ["ignore", "pipe", "pipe"] }));
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("exit", (code, signal) => {
      const [total, inProcess] = out.trim().split("\n").pop().split(" ").map(Number.parseFloat);
      if (code === 0 && Number.isFinite(total) && Number.isFinite(inProcess)) return resolve({ total, inProcess });
      startupFailures.push(`${path.basename(file)}: exit ${code ?? signal}: ${(err.trim() || out.trim()).split("\n").slice(0, 3).join(" | ")}`);
      resolve(null);
    });
  });
}

const progress = (s) => process.stderr.write(`bench: ${s}\n`);

// ---------------------------------------------------------------------------------------
// Machine description

function machine() {
  let cpu = os.cpus()[0]?.model?.trim() ?? "unknown CPU";
  let nproc = os.availableParallelism?.() ?? os.cpus().length;
  try {
    nproc = Number(execFileSync("nproc", { encoding: "utf8" }).trim()) || nproc;
  } catch {}
  return {
    date: new Date().toISOString(),
    nproc,
    cpu,
    node: process.versions.node,
    v8: process.versions.v8,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    memoryGB: +(os.totalmem() / 2 ** 30).toFixed(1),
    loadavgStart: os.loadavg().map((x) => +x.toFixed(2)),
    quick,
  };
}

// ---------------------------------------------------------------------------------------
// Figure 1: size

/** gzip -9 size: the gzip program when there is one (the numbers build-pkg.sh prints), else
 *  zlib at level 9 (a few hundred bytes larger on the wasm). */
function gz(buf) {
  try {
    return execFileSync("gzip", ["-9", "-n", "-c"], { input: buf, maxBuffer: 64 << 20 }).length;
  } catch {
    return gzipSync(buf, { level: zconst.Z_BEST_COMPRESSION }).length;
  }
}

function pkgDir() {
  // bench/node_modules/auth-session is a symlink to the built package (run.sh makes it).
  const entry = fileURLToPath(import.meta.resolve("auth-session"));
  return path.dirname(entry);
}

async function figureSize() {
  const esbuild = await import("esbuild");
  const bundle = async (contents, { platform = "browser", external = [] } = {}) => {
    const r = await esbuild.build({
      stdin: { contents, resolveDir: benchDir, loader: "js", sourcefile: "entry.mjs" },
      bundle: true,
      minify: true,
      format: "esm",
      platform,
      external,
      write: false,
      logLevel: "silent",
      legalComments: "none",
    });
    const code = r.outputFiles[0].contents;
    return { min: code.length, gzip: gz(code) };
  };

  const rows = [];
  rows.push({ contender: "raw-fetch", library: { min: 0, gzip: 0 }, asUsed: { min: 0, gzip: 0 }, note: "built into the runtime" });
  rows.push({
    contender: "handwritten",
    library: null,
    asUsed: await bundle(`export { HandwrittenSession } from "./contenders/handwritten.mjs";`),
    note: "bench/contenders/handwritten.mjs (the floor)",
  });
  rows.push({
    contender: "contract",
    library: null,
    asUsed: await bundle(`export { ContractSession } from "./contenders/contract.mjs";`),
    note: "bench/contenders/contract.mjs (auth-session's contract on the measured paths)",
  });
  rows.push({
    contender: "ky",
    library: await bundle(`export { default } from "ky";`),
    asUsed: await bundle(`export { createKySession } from "./contenders/ky.mjs";`),
    note: "ky + the hooks in bench/contenders/ky.mjs",
  });
  rows.push({
    contender: "axios",
    library: await bundle(`export { default as axios } from "axios"; export { createAuthRefresh } from "axios-auth-refresh";`),
    asUsed: await bundle(`export { createAxiosSession } from "./contenders/axios.mjs";`),
    note: "browser build of axios (xhr/fetch adapters)",
  });
  const supa = await bundle(`export { GoTrueClient } from "@supabase/auth-js";`);
  rows.push({ contender: "supabase", library: supa, asUsed: supa, note: "GoTrueClient" });

  // Ours, per entry, from the package files.
  const dir = pkgDir();
  const read = (f) => readFileSync(path.join(dir, f));
  const wasm = read("auth_session_bg.wasm");
  const glue = read("auth_session.js");
  // The glue, the driver (session.js) and AuthError: what every ESM entry loads.
  const common = ["auth_session.js", "session.js", "auth-error.js", "encryption.js", "pool.js"];
  const entryFile = (f) => path.join(dir, f);
  const ours = [];
  const entries = [
    { entry: "web.mjs", runtime: "browsers, Deno", files: ["web.mjs", ...common], platform: "browser" },
    { entry: "node.mjs", runtime: "Node ESM, Bun", files: ["node.mjs"], platform: "node" },
    { entry: "node.cjs", runtime: "Node CJS", files: ["node.cjs"], platform: "node" },
    { entry: "workerd.mjs", runtime: "Cloudflare workerd", files: ["workerd.mjs", ...common], platform: "neutral" },
  ];
  for (const e of entries) {
    const js = e.files.map(read);
    const jsRaw = js.reduce((a, b) => a + b.length, 0);
    const jsGzip = js.reduce((a, b) => a + gz(b), 0);
    let jsMin;
    if (e.entry === "node.cjs") {
      const r = await esbuild.transform(read("node.cjs").toString(), { minify: true, format: "cjs", platform: "node", legalComments: "none" });
      jsMin = { min: Buffer.byteLength(r.code), gzip: gz(Buffer.from(r.code)) };
    } else {
      jsMin = await bundle(`export * from ${JSON.stringify(entryFile(e.entry))};`, {
        platform: e.platform,
        external: ["*.wasm", "node:*"],
      });
    }
    ours.push({
      entry: e.entry,
      runtime: e.runtime,
      raw: jsRaw + wasm.length,
      gzip: jsGzip + gz(wasm),
      minGzip: jsMin.gzip + gz(wasm),
      jsMinGzip: jsMin.gzip,
    });
  }
  const wasmGlueGzip = gz(wasm) + gz(glue);
  // The goal's figure: what the Node entry loads, its JS minified, each file gzip -9.
  const nodeEntry = ours.find((o) => o.entry === "node.mjs");
  return {
    contenders: rows,
    ours,
    wasm: { raw: wasm.length, gzip: gz(wasm) },
    glue: { raw: glue.length, gzip: gz(glue) },
    wasmGlueGzip,
    goal: { value: nodeEntry.minGzip, ok: nodeEntry.minGzip <= GOALS.sizeGzipBytes },
  };
}

function printSize(s) {
  const rows = s.contenders.map((r) => [
    LABELS[r.contender],
    r.library ? fmt.kb(r.library.gzip) : "—",
    fmt.kb(r.asUsed.gzip),
    fmt.kb(r.asUsed.min),
    r.note,
  ]);
  const best = s.ours.find((o) => o.entry === "web.mjs");
  rows.push([`auth-session (ours), web.mjs`, "", fmt.kb(best.minGzip), "", "wasm + minified JS of that entry"]);
  console.log(
    table(
      "1. SIZE — what a user ships, min+gzip -9 (esbuild --bundle --minify --format=esm --platform=browser of a one-line import)",
      ["contender", "library", "as used here", "min (as used)", "note"],
      rows,
      { align: "lrrrl", notes: ['"as used here": the library plus the refresh code a user writes around it (bench/contenders/*.mjs).'] },
    ),
  );
  const r2 = s.ours.map((o) => [o.entry, o.runtime, fmt.kb(o.raw), fmt.kb(o.gzip), fmt.kb(o.minGzip), fmt.kb(o.jsMinGzip)]);
  console.log(
    table(
      "   auth-session per entry (package files measured directly: esbuild does not inline the .wasm)",
      ["entry", "runtime", "raw", "gzip -9 as shipped", "JS minified + wasm, gzip", "of which JS"],
      r2,
      { align: "llrrrr" },
    ),
  );
  console.log(
    table(
      "   goal",
      ["", "ours", "goal", "ok"],
      [
        [
          `node.mjs: wasm ${fmt.kb(s.wasm.gzip)} + glue, driver and entry minified ${fmt.kb(s.goal.value - s.wasm.gzip)}, gzip -9`,
          fmt.kb(s.goal.value),
          `≤ ${fmt.kb(GOALS.sizeGzipBytes)}`,
          fmt.mark(s.goal.ok),
        ],
      ],
      { align: "lrrl" },
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Figure 2: start-up

async function figureStartup() {
  const scripts = [
    ["empty", "startup/empty.mjs"],
    ["handwritten", "startup/handwritten.mjs"],
    ["contract", "startup/contract.mjs"],
    ["ky", "startup/ky.mjs"],
    ["axios", "startup/axios.mjs"],
    ["supabase", "startup/supabase.mjs"],
    ["auth-session", "startup/auth-session.mjs"],
    ["auth-session-cjs", "startup/auth-session-cjs.cjs"],
  ];
  const samples = Object.fromEntries(scripts.map(([k]) => [k, []]));
  for (let r = 0; r < CONFIG.startupRuns && !interrupted; r++) {
    for (const [k, f] of rotate(scripts, r)) samples[k].push(await runStartup(path.join(benchDir, f)));
  }
  const totals = (k) => samples[k].filter((x) => x != null).map((x) => x.total);
  const base = median(totals("empty"));
  const baseMin = Math.min(...totals("empty"));
  const rows = scripts.map(([k]) => {
    const ok = totals(k);
    const m = median(ok);
    return {
      contender: k,
      medianMs: m,
      minusEmptyMs: m == null || base == null ? null : m - base,
      minMs: ok.length ? Math.min(...ok) : null,
      inProcessMs: median(samples[k].filter((x) => x != null).map((x) => x.inProcess)),
      runs: ok.length,
      failures: samples[k].length - ok.length,
    };
  });
  const ours = rows.find((r) => r.contender === "auth-session");
  const oursCjs = rows.find((r) => r.contender === "auth-session-cjs");
  const floor = rows.find((r) => r.contender === "handwritten");
  const contract = rows.find((r) => r.contender === "contract");
  // On the in-process time: a fresh process's own start varies by tens of ms on a shared VM,
  // which "minus the empty script" does not cancel out run by run.
  const over = (r, than) => (r?.inProcessMs == null || than?.inProcessMs == null ? null : r.inProcessMs - than.inProcessMs);
  for (const r of rows) {
    r.minMinusEmptyMinMs = r.minMs == null ? null : r.minMs - baseMin;
    r.overFloorMs = over(r, floor);
    r.overContractMs = over(r, contract);
  }
  // The goal: ESM and CJS each within a few ms of the contract client (in process).
  const worstOf = (key) => {
    const v = [ours?.[key], oursCjs?.[key]].filter((x) => x != null);
    return v.length === 2 ? Math.max(...v) : null;
  };
  const value = worstOf("overContractMs");
  return {
    runs: CONFIG.startupRuns,
    samples,
    rows,
    failures: startupFailures,
    goal: { value, overFloorMs: worstOf("overFloorMs"), ok: value != null && value <= GOALS.startupVsContractMs },
  };
}

function printStartup(s) {
  const label = (k) => (k === "empty" ? "empty script (Node itself)" : k === "auth-session-cjs" ? "auth-session (ours, Node CJS)" : LABELS[k]);
  const rows = s.rows.map((r) => [
    label(r.contender),
    fmt.ms(r.medianMs, 2),
    r.contender === "empty" ? "—" : fmt.ms(r.minusEmptyMs, 2),
    fmt.ms(r.minMs, 2),
    r.contender === "empty" ? "—" : fmt.ms(r.minMinusEmptyMinMs, 2),
    r.contender === "empty" ? "—" : fmt.ms(r.inProcessMs, 2),
    r.contender === "empty" || r.contender === "handwritten" ? "—" : fmt.ms(r.overFloorMs, 2),
    r.contender === "empty" || r.contender === "contract" ? "—" : fmt.ms(r.overContractMs, 2),
    `${r.runs}${r.failures ? ` (${r.failures} failed)` : ""}`,
    r.contender.startsWith("auth-session") ? `≤ hand-written (contract) + ${GOALS.startupVsContractMs} ms` : "",
    r.contender.startsWith("auth-session") ? fmt.mark(s.goal.ok) : "",
  ]);
  console.log(
    table(
      `2. START-UP — fresh node process: import + instantiate + new client (median of ${s.runs} interleaved runs)`,
      ["contender", "median", "minus empty", "min", "min minus empty's min", "in process", "− hand-written (floor)", "− hand-written (contract)", "runs", "goal", "ok"],
      rows,
      {
        align: "lrrrrrrrrrl",
        notes: [
          "median / min: ms since the process started (performance.timeOrigin) when the client is constructed.",
          "in process: median ms from just before the import (dynamic import() / require()) to after the constructor; the goal is on it.",
          "− hand-written (floor / contract): the row's \"in process\" minus that client's (a fresh process's own start varies by tens of ms here).",
          "raw fetch has no start-up of its own (it is the empty script); supabase: import + new GoTrueClient, no network.",
          "children run without NODE_EXTRA_CA_CERTS / NODE_OPTIONS (a CA bundle parsed at start-up adds ~150 ms of noise to every process).",
          ...s.failures.slice(0, 3).map((f) => `failed run: ${f}`),
        ],
      },
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Figure 3: per-request overhead

const TP_CONTENDERS = ["raw-fetch", "handwritten", "contract", "ky", "axios", "auth-session"];

async function figureThroughput(host) {
  const { rounds, durationMs, warmupMs, concurrencies } = CONFIG.throughput;
  const runs = [];
  let i = 0;
  for (let round = 0; round < rounds && !interrupted; round++) {
    for (const concurrency of concurrencies) {
      for (const contender of rotate(TP_CONTENDERS, round + concurrencies.indexOf(concurrency))) {
        if (interrupted) break;
        progress(`throughput round ${round + 1}/${rounds} c=${concurrency} ${contender}`);
        const r = await runJob({ job: "throughput", host, contender, concurrency, durationMs, warmupMs });
        runs.push({ round, concurrency, contender, order: i++, ...r });
      }
    }
  }
  const summary = [];
  for (const concurrency of concurrencies) {
    for (const contender of TP_CONTENDERS) {
      const mine = runs.filter((r) => r.concurrency === concurrency && r.contender === contender && !r.error);
      const ratio = (other) =>
        median(
          mine.map((r) => {
            const o = runs.find((x) => x.round === r.round && x.concurrency === concurrency && x.contender === other && !x.error);
            return o ? r.reqPerSec / o.reqPerSec : null;
          }),
        );
      const cpuRatio = (other) =>
        median(
          mine.map((r) => {
            const o = runs.find((x) => x.round === r.round && x.concurrency === concurrency && x.contender === other && !x.error);
            return o && o.cpuUsPerRequest > 0 ? r.cpuUsPerRequest / o.cpuUsPerRequest : null;
          }),
        );
      summary.push({
        concurrency,
        contender,
        rounds: mine.length,
        reqPerSec: median(mine.map((r) => r.reqPerSec)),
        p50: median(mine.map((r) => r.p50)),
        p99: median(mine.map((r) => r.p99)),
        errors: mine.reduce((a, r) => a + r.errors, 0),
        refreshes: mine.reduce((a, r) => a + (r.refreshes ?? 0), 0),
        ratioToRaw: ratio("raw-fetch"),
        ratioToHandwritten: ratio("handwritten"),
        ratioToContract: ratio("contract"),
        cpuUsPerRequest: median(mine.map((r) => r.cpuUsPerRequest)),
        cpuToHandwritten: cpuRatio("handwritten"),
        cpuToContract: cpuRatio("contract"),
        failed: runs.filter((r) => r.concurrency === concurrency && r.contender === contender && r.error).map((r) => r.error),
      });
    }
  }
  const ours = summary.filter((s) => s.contender === "auth-session");
  const ok =
    ours.length > 0 &&
    ours.every(
      (s) =>
        s.ratioToContract != null &&
        s.ratioToContract >= GOALS.throughputRatio &&
        s.cpuToContract != null &&
        s.cpuToContract <= GOALS.cpuVsContract &&
        s.errors === 0,
    );
  return { config: CONFIG.throughput, runs, summary, goal: { ok } };
}

function printThroughput(t) {
  const { rounds, durationMs } = t.config;
  const rows = [];
  for (const s of t.summary) {
    const isOurs = s.contender === "auth-session";
    const okHw = s.ratioToContract != null && s.ratioToContract >= GOALS.throughputRatio;
    const okCpu = s.cpuToContract != null && s.cpuToContract <= GOALS.cpuVsContract;
    rows.push([
      String(s.concurrency),
      LABELS[s.contender],
      s.failed.length ? `failed: ${s.failed[0].slice(0, 40)}` : fmt.int(s.reqPerSec),
      fmt.ms(s.p50, 2),
      fmt.ms(s.p99, 2),
      s.contender === "raw-fetch" ? "1.000×" : fmt.ratio(s.ratioToRaw),
      s.contender === "handwritten" ? "1.000×" : fmt.ratio(s.ratioToHandwritten),
      s.contender === "contract" ? "1.000×" : fmt.ratio(s.ratioToContract),
      s.cpuUsPerRequest == null ? "—" : `${s.cpuUsPerRequest.toFixed(1)} µs`,
      s.contender === "handwritten" ? "1.000×" : fmt.ratio(s.cpuToHandwritten),
      s.contender === "contract" ? "1.000×" : fmt.ratio(s.cpuToContract),
      String(s.errors),
      isOurs ? `≥ ${GOALS.throughputRatio.toFixed(1)}× contract req/s, ≤ ${GOALS.cpuVsContract.toFixed(1)}× contract CPU` : "",
      isOurs ? fmt.mark(okHw && okCpu && s.errors === 0) : "",
    ]);
  }
  console.log(
    table(
      `3. PER-REQUEST OVERHEAD — authenticated GET /api/v1/products, valid token (${rounds} interleaved round${rounds > 1 ? "s" : ""} × ${durationMs / 1000} s per contender and concurrency; medians)`,
      ["conc", "contender", "req/s", "p50", "p99", "÷ raw fetch", "÷ hand-written (floor)", "÷ hand-written (contract)", "client CPU/req", "CPU ÷ floor", "CPU ÷ contract", "errors", "goal", "ok"],
      rows,
      { align: "rlrrrrrrrrrrll", notes: ["ratios are medians of per-round ratios (same round, same concurrency); client CPU: process.cpuUsage() of the client process (user + system) over the measured phase, per request."] },
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Figure 4: refresh storm

const STORM_CONTENDERS = ["handwritten", "contract", "ky", "axios", "auth-session"];
const EXPIRED_MODES = ["client-expired", "server-expired"];

async function figureStorm(host) {
  const rtt = await runJob({ job: "refresh-rtt", host, samples: CONFIG.rttSamples });
  const runs = [];
  for (const n of CONFIG.storm.sizes) {
    const rounds = CONFIG.storm.roundsFor(n);
    for (let round = 0; round < rounds && !interrupted; round++) {
      // Each round: every contender's two expiry kinds (each process pairs them with valid-
      // token phases, ABBA), contenders rotated; raw fetch (valid token only: it cannot
      // refresh) as the floor. Even rounds run EVVE, odd ones VEEV, so a one-round run still
      // measures the storm's peak RSS (a process's first phase) and longer runs get both.
      const order = rotate([...STORM_CONTENDERS, "raw-fetch"], round);
      const phases = round % 2 === 0 ? "EVVE" : "VEEV";
      for (const contender of order) {
        const modes = contender === "raw-fetch" ? ["valid"] : rotate(EXPIRED_MODES, round);
        for (const mode of modes) {
          if (interrupted) break;
          progress(`storm n=${n} round ${round + 1}/${rounds} ${contender} ${mode}${mode === "valid" ? "" : ` ${phases}`}`);
          const r = await runJob({ job: "storm", host, contender, n, mode, order: phases });
          runs.push({ n, round, contender, mode, order: phases, ...r });
        }
      }
    }
  }

  const summary = [];
  const firstOf = (list, kind) => list.filter((r) => r.phases[0].kind === kind).map((r) => r.phases[0]);
  for (const n of CONFIG.storm.sizes) {
    for (const contender of [...STORM_CONTENDERS, "raw-fetch"]) {
      const all = runs.filter((r) => r.n === n && r.contender === contender);
      if (all.length === 0) continue;
      const good = all.filter((r) => !r.error);
      const vPhases = good.flatMap((r) => r.phases.filter((p) => p.kind === "V"));
      summary.push({
        n,
        contender,
        mode: "valid",
        processes: good.length,
        timeMs: median(vPhases.map((p) => p.timeMs)),
        validMs: median(vPhases.map((p) => p.timeMs)),
        ratioToValid: 1,
        deltaMs: 0,
        refreshesMax: max(vPhases.map((p) => p.refreshes)),
        refreshesMin: vPhases.length ? Math.min(...vPhases.map((p) => p.refreshes)) : null,
        lostMax: max(vPhases.map((p) => p.lost)),
        rssDelta: median(firstOf(good, "V").map((p) => p.rssDelta)),
        heapDelta: median(vPhases.map((p) => p.heapDelta)),
        firstError: vPhases.find((p) => p.firstError)?.firstError ?? null,
        failed: all.filter((r) => r.error).map((r) => r.error),
      });
      for (const mode of EXPIRED_MODES) {
        const mine = all.filter((r) => r.mode === mode);
        if (mine.length === 0) continue;
        const ok = mine.filter((r) => !r.error);
        const ePhases = ok.flatMap((r) => r.phases.filter((p) => p.kind === "E"));
        const pairs = ok.map((r) => {
          const sum = (k) => r.phases.filter((p) => p.kind === k).reduce((a, p) => a + p.timeMs, 0);
          const count = r.phases.filter((p) => p.kind === "E").length;
          return { ratio: sum("E") / sum("V"), delta: (sum("E") - sum("V")) / count };
        });
        summary.push({
          n,
          contender,
          mode,
          processes: ok.length,
          timeMs: median(ePhases.map((p) => p.timeMs)),
          validMs: median(ok.flatMap((r) => r.phases.filter((p) => p.kind === "V").map((p) => p.timeMs))),
          ratioToValid: median(pairs.map((p) => p.ratio)),
          deltaMs: median(pairs.map((p) => p.delta)),
          refreshesMax: max(ePhases.map((p) => p.refreshes)),
          refreshesMin: ePhases.length ? Math.min(...ePhases.map((p) => p.refreshes)) : null,
          lostMax: max(ePhases.map((p) => p.lost)),
          spentReuse: max(ePhases.map((p) => p.spentReuse)),
          rssDelta: median(firstOf(ok, "E").map((p) => p.rssDelta)),
          heapDelta: median(ePhases.map((p) => p.heapDelta)),
          firstError: ePhases.find((p) => p.firstError)?.firstError ?? null,
          failed: mine.filter((r) => r.error).map((r) => r.error),
        });
      }
    }
  }
  const biggest = Math.max(...CONFIG.storm.sizes);
  const ours = (mode) => summary.find((s) => s.n === biggest && s.contender === "auth-session" && s.mode === mode);
  const slack = rtt.medianMs != null ? rtt.medianMs + GOALS.stormSlackMs : null;
  const exact = EXPIRED_MODES.every((m) => {
    const s = ours(m);
    return s && s.failed.length === 0 && s.processes > 0 && s.refreshesMax === 1 && s.refreshesMin === 1 && s.lostMax === 0;
  });
  const ce = ours("client-expired");
  const timeOk = ce != null && slack != null && ce.deltaMs != null && ce.deltaMs <= slack;
  return { sizes: CONFIG.storm.sizes, rtt, runs, summary, goal: { n: biggest, exact, timeOk, slackMs: slack, ok: exact && timeOk } };
}

function printStorm(s) {
  const modeLabel = { valid: "valid token", "client-expired": "expired (client knows)", "server-expired": "expired on server (401)" };
  const rows = [];
  for (const r of s.summary) {
    const isOurs = r.contender === "auth-session" && r.mode !== "valid";
    let goal = "";
    let ok = "";
    if (isOurs) {
      const exact = r.refreshesMax === 1 && r.refreshesMin === 1 && r.lostMax === 0 && r.failed.length === 0;
      const timeOk = r.mode === "client-expired" ? r.deltaMs != null && s.goal.slackMs != null && r.deltaMs <= s.goal.slackMs : true;
      goal = r.mode === "client-expired" ? `1 refresh, 0 lost, Δ ≤ ${fmt.ms(s.goal.slackMs)}` : "1 refresh, 0 lost";
      ok = fmt.mark(exact && timeOk);
    }
    const expired = r.mode !== "valid";
    rows.push([
      fmt.int(r.n),
      LABELS[r.contender],
      modeLabel[r.mode],
      r.failed.length && !r.processes ? `failed: ${r.failed[0].slice(0, 50)}` : fmt.ms(r.timeMs, 0),
      expired ? fmt.ratio(r.ratioToValid) : "",
      expired ? fmt.ms(r.deltaMs, 1) : "",
      r.refreshesMax == null ? "—" : r.refreshesMin === r.refreshesMax ? String(r.refreshesMax) : `${r.refreshesMin}–${r.refreshesMax}`,
      r.lostMax == null ? "—" : String(r.lostMax),
      fmt.mb(r.rssDelta),
      fmt.mb(r.heapDelta),
      goal,
      ok,
    ]);
  }
  const notes = [
    `refresh round trip (raw fetch, median of ${s.rtt.samples?.length ?? 0}): ${fmt.ms(s.rtt.medianMs, 2)}.`,
    "Each contender and expiry kind runs in one process: a warm-up of N valid calls (JIT; pooled connections open), then",
    "  phases EVVE or VEEV (E: N calls with an expired token, V: N calls with a valid one). ÷ valid and Δ = (ΣE − ΣV) / 2",
    "  are per process, then the median over processes; time = median phase time.",
    "expired (client knows): the access token's expiry has passed and the client can see it (refresh first, then the calls).",
    "expired on server (401): the server expired the token early (POST /__control/expire-access): every call gets a 401, one refresh, every call replays.",
    "refreshes: /auth/refresh requests the server counted in one phase (min–max); lost: calls that rejected or did not end in a 200 (worst phase).",
    "raw fetch cannot refresh: its valid-token row is the floor. Peak RSS Δ: from processes whose first phase is of that kind; heap: sampled heapUsed.",
    "Connection pools (Node's fetch and http.globalAgent alike) are capped at 4,096 sockets per origin: uncapped, a 10,000-call 401 storm",
    "  opens ~20,000 sockets, past this machine's descriptor limit. The server's keep-alive is 65 s (see bench/lib/server-child.mjs).",
  ];
  const errs = s.summary.filter((r) => r.firstError && r.lostMax > 0);
  for (const e of errs) notes.push(`${LABELS[e.contender]} at ${fmt.int(e.n)}, ${modeLabel[e.mode]}: first error "${e.firstError}"`);
  for (const e of s.summary.filter((r) => r.failed.length)) notes.push(`${LABELS[e.contender]} at ${fmt.int(e.n)}, ${modeLabel[e.mode]}: ${e.failed.length} process(es) failed: ${e.failed[0].slice(0, 100)}`);
  console.log(
    table(
      `4. REFRESH STORM — N concurrent calls arriving with an expired access token, vs the same N with a valid one (same process)`,
      ["N", "contender", "token", "time", "÷ valid", "Δ", "refreshes", "lost", "peak RSS Δ", "peak heap Δ", "goal", "ok"],
      rows,
      { align: "rllrrrrrrrll", notes },
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Figure 5: memory per idle session

const MEM_CONTENDERS = ["raw-fetch", "handwritten", "contract", "ky", "axios", "auth-session"];

async function figureMemory(host) {
  const runs = [];
  for (const sessions of CONFIG.memory.sessions) {
    for (const contender of rotate(MEM_CONTENDERS, runs.length)) {
      if (interrupted) break;
      progress(`memory ${sessions} sessions ${contender}`);
      const r = await runJob({ job: "memory", host, contender, sessions });
      runs.push({ contender, sessions, ...r });
    }
  }
  const ours = runs.filter((r) => r.contender === "auth-session");
  const ok = ours.length > 0 && ours.every((r) => !r.error && r.beyondTokens <= GOALS.memoryBeyondTokens);
  return { runs, goal: { ok } };
}

function printMemory(m) {
  const rows = [];
  for (const sessions of CONFIG.memory.sessions) {
    const floor = m.runs.find((r) => r.sessions === sessions && r.contender === "raw-fetch" && !r.error);
    for (const contender of MEM_CONTENDERS) {
      const r = m.runs.find((x) => x.sessions === sessions && x.contender === contender);
      if (!r) continue;
      const isOurs = contender === "auth-session";
      if (r.error) {
        rows.push([fmt.int(sessions), LABELS[contender], `failed: ${r.error.slice(0, 60)}`, "", "", "", "", "", "", "", "", ""]);
        continue;
      }
      rows.push([
        fmt.int(sessions),
        LABELS[contender],
        fmt.bytes(r.heap / sessions),
        fmt.bytes(Math.max(r.external, r.arrayBuffers + r.wasm) / sessions),
        isOurs ? fmt.bytes(r.wasm / sessions) : "—",
        fmt.bytes(r.perSession),
        fmt.bytes(r.beyondTokens),
        floor && contender !== "raw-fetch" ? fmt.bytes(r.perSession - floor.perSession) : "—",
        fmt.bytes(r.rss / sessions),
        fmt.ms(r.loginMs, 0),
        isOurs ? `≤ ${fmt.bytes(GOALS.memoryBeyondTokens)} beyond tokens` : "",
        isOurs ? fmt.mark(r.beyondTokens <= GOALS.memoryBeyondTokens) : "",
      ]);
    }
  }
  const tok = m.runs.find((r) => r.tokenBytes)?.tokenBytes;
  console.log(
    table(
      "5. MEMORY PER IDLE SESSION — N sessions logged in, one process, --expose-gc and gc() before each reading (bytes per session)",
      ["N", "contender", "JS heap", "external (ArrayBuffers + wasm)", "of which wasm", "total", "beyond tokens", "beyond raw fetch", "RSS", "N logins took", "goal", "ok"],
      rows,
      {
        align: "rlrrrrrrrrll",
        notes: [
          `token bytes per session (access + refresh token): ${tok ?? "—"} B. Each session logged in against the server, 64 at a time.`,
          "raw fetch keeps only a static header: its row is the floor (what fetch itself leaves behind per login is in it too).",
          "auth-session's wasm memory is read from the instance (WebAssembly.Memory grows in 64 KiB pages); V8 counts it in `external`, so it is not added twice.",
        ],
      },
    ),
  );
}

// ---------------------------------------------------------------------------------------
// Main

const started = performance.now();
const meta = machine();
const results = { meta, config: { ...CONFIG, storm: { sizes: CONFIG.storm.sizes }, goals: GOALS, figures: [...only] } };

console.log(`auth-session benchmark — ${meta.date}${quick ? " (--quick)" : ""}`);
console.log(`machine: ${meta.cpu}, nproc ${meta.nproc}, ${meta.memoryGB} GiB, ${meta.platform}; Node ${meta.node} (V8 ${meta.v8})`);
console.log(`load average at start: ${meta.loadavgStart.join(", ")}`);
console.log("NOTE: this machine is shared and noisy: absolute numbers move from run to run; the contenders run");
console.log("      interleaved in the same run against the same server, so compare the RATIOS.");

let server = null;
try {
  if (only.has("size")) {
    progress("size");
    results.size = await figureSize();
    printSize(results.size);
  }
  if (only.has("startup")) {
    progress(`start-up (${CONFIG.startupRuns} runs × 8 scripts)`);
    results.startup = await figureStartup();
    printStartup(results.startup);
  }
  if (["throughput", "storm", "memory"].some((f) => only.has(f))) {
    server = await startServerProcess();
    results.meta.server = server.url;
    progress(`reference server at ${server.url} (pid ${server.child.pid}); warming it up`);
    // The server's own JIT warm-up must not land on the first contender measured.
    const w = await runJob({ job: "throughput", host: server.url, contender: "raw-fetch", concurrency: 16, durationMs: quick ? 500 : 1500, warmupMs: 0 });
    if (w.error) throw new Error(`the server warm-up failed: ${w.error}`);
  }
  if (only.has("throughput") && !interrupted) {
    results.throughput = await figureThroughput(server.url);
    printThroughput(results.throughput);
  }
  if (only.has("storm") && !interrupted) {
    results.storm = await figureStorm(server.url);
    printStorm(results.storm);
  }
  if (only.has("memory") && !interrupted) {
    results.memory = await figureMemory(server.url);
    printMemory(results.memory);
  }
  if (only.has("leak") && !interrupted) {
    const cycles = quick ? 10_000 : 100_000;
    progress(`leak check (${cycles} refresh cycles, scripted fetch)`);
    console.log(`\n6. LEAK CHECK — ${cycles} refresh cycles in one process (bench/leak.mjs), after GC at each tenth`);
    let out;
    let ok = true;
    try {
      out = execFileSync(process.execPath, ["--expose-gc", path.join(benchDir, "leak.mjs"), String(cycles), pkgDir()], { encoding: "utf8" });
    } catch (e) {
      out = `${e.stdout ?? ""}${e.stderr ?? ""}`;
      ok = false;
    }
    console.log(out.trimEnd().replace(/^/gm, "   "));
    results.leak = { cycles, ok, output: out };
  }
} finally {
  shuttingDown = true;
  if (server) {
    server.child.kill("SIGTERM");
    await new Promise((r) => (server.child.exitCode != null || server.child.signalCode != null ? r() : server.child.once("exit", r)));
  }
}
if (interrupted) process.exit(130);

// Summary of the goals (issue 12): auth-session against the contract client, the floor beside it.
// Columns "hand-written (floor)" / "(contract)": for a goal relative to a client, ours relative to
// that client (a ratio or a difference); for an absolute goal, that client's own figure.
const g = [];
const unsupported = "@supabase/auth-js cannot speak this protocol (GoTrue: POST /token?grant_type=password with email/password, a bare token JSON, no {success,data} envelope, /auth/login is not a GoTrue route): size and start-up only.";
const HANDS = ["handwritten", "contract"];
const plus = (ms) => (ms == null ? "—" : `${ms >= 0 ? "+" : "−"}${Math.abs(ms).toFixed(2)} ms`);
if (results.size) {
  const asUsed = (k) => results.size.contenders.find((c) => c.contender === k)?.asUsed.gzip;
  g.push(["size: node.mjs wasm + glue + driver, min + gzip -9 (hand-written: as used, min + gzip -9)", fmt.kb(results.size.goal.value), ...HANDS.map((k) => fmt.kb(asUsed(k))), `≤ ${fmt.kb(GOALS.sizeGzipBytes)}`, fmt.mark(results.size.goal.ok)]);
}
if (results.startup) {
  const st = results.startup;
  const oursInProcess = Math.max(...["auth-session", "auth-session-cjs"].map((k) => st.rows.find((r) => r.contender === k)?.inProcessMs ?? NaN));
  g.push(["start-up, worst of ESM/CJS, import + construct in process; ours minus each hand-written client's", fmt.ms(Number.isFinite(oursInProcess) ? oursInProcess : null, 2), plus(st.goal.overFloorMs), plus(st.goal.value), `≤ +${GOALS.startupVsContractMs} ms over contract`, fmt.mark(st.goal.ok)]);
}
if (results.throughput) {
  for (const s of results.throughput.summary.filter((x) => x.contender === "auth-session")) {
    const ok = s.errors === 0 && s.ratioToContract != null && s.ratioToContract >= GOALS.throughputRatio && s.cpuToContract != null && s.cpuToContract <= GOALS.cpuVsContract;
    g.push([
      `throughput at concurrency ${s.concurrency}: req/s ÷ / client CPU per request ÷`,
      `${fmt.int(s.reqPerSec)} req/s, ${s.cpuUsPerRequest == null ? "—" : s.cpuUsPerRequest.toFixed(1)} µs`,
      `${fmt.ratio(s.ratioToHandwritten)} / ${fmt.ratio(s.cpuToHandwritten)}`,
      `${fmt.ratio(s.ratioToContract)} / ${fmt.ratio(s.cpuToContract)}`,
      `≥ ${GOALS.throughputRatio.toFixed(1)}× / ≤ ${GOALS.cpuVsContract.toFixed(1)}× contract`,
      fmt.mark(ok),
    ]);
  }
}
if (results.storm) {
  const sg = results.storm.goal;
  const row = (k, mode) => results.storm.summary.find((s) => s.n === sg.n && s.contender === k && s.mode === mode);
  const exactOf = (k) => {
    const rs = EXPIRED_MODES.map((m) => row(k, m));
    if (rs.some((r) => !r)) return "—";
    return rs.every((r) => r.failed.length === 0 && r.processes > 0 && r.refreshesMax === 1 && r.refreshesMin === 1 && r.lostMax === 0) ? "yes" : "no";
  };
  g.push([`storm at ${fmt.int(sg.n)}: exactly 1 refresh and 0 lost (both expiry kinds)`, sg.exact ? "yes" : "no", ...HANDS.map(exactOf), "yes", fmt.mark(sg.exact)]);
  g.push([`storm at ${fmt.int(sg.n)}: time − valid-token time (client knows)`, fmt.ms(row("auth-session", "client-expired")?.deltaMs, 1), ...HANDS.map((k) => fmt.ms(row(k, "client-expired")?.deltaMs, 1)), `≤ ${fmt.ms(sg.slackMs, 1)} (1 refresh RTT + ${GOALS.stormSlackMs} ms)`, fmt.mark(sg.timeOk)]);
}
if (results.memory) {
  for (const r of results.memory.runs.filter((x) => x.contender === "auth-session")) {
    const other = (k) => {
      const o = results.memory.runs.find((x) => x.contender === k && x.sessions === r.sessions);
      return !o ? "—" : o.error ? "failed" : fmt.bytes(o.beyondTokens);
    };
    g.push([`memory, ${fmt.int(r.sessions)} idle sessions: beyond token bytes`, r.error ? "failed" : fmt.bytes(r.beyondTokens), ...HANDS.map(other), `≤ ${fmt.bytes(GOALS.memoryBeyondTokens)}`, fmt.mark(!r.error && r.beyondTokens <= GOALS.memoryBeyondTokens)]);
  }
}
if (results.leak) {
  g.push([`leak: ${fmt.int(results.leak.cycles)} refresh cycles, wasm memory and heap after GC`, results.leak.ok ? "flat" : "grew", "—", "—", "flat", fmt.mark(results.leak.ok)]);
}
console.log(
  table("GOALS — auth-session (ours), issue 12: against the hand-written client of the same contract; the floor beside it", ["goal", "auth-session", "hand-written (floor)", "hand-written (contract)", "target", "ok"], g, {
    align: "lrrrrl",
    notes: [
      "hand-written columns: for a goal relative to a client, ours ÷ (or −) that client; for an absolute goal (size, storm, memory), that client's own figure.",
      "floor: bench/contenders/handwritten.mjs (no timeouts, retries, error taxonomy); contract: bench/contenders/contract.mjs (auth-session's contract on these paths).",
      unsupported,
    ],
  }),
);

results.meta.loadavgEnd = os.loadavg().map((x) => +x.toFixed(2));
results.meta.durationSec = +((performance.now() - started) / 1000).toFixed(1);
results.unsupported = { supabase: unsupported };
writeFileSync(path.join(benchDir, "results.json"), `${JSON.stringify(results, null, 2)}\n`);
if (results.throughput || results.storm) {
  writeFileSync(path.join(benchDir, "chart.svg"), renderChart(results));
}
console.log(`\nload average at end: ${results.meta.loadavgEnd.join(", ")}; took ${results.meta.durationSec} s`);
console.log(`wrote bench/results.json${results.throughput || results.storm ? " and bench/chart.svg" : ""}`);
