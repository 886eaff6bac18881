// workerd's cost of importing and instantiating the package, measured from outside (workerd
// only advances its clocks on I/O, so the Worker cannot time itself).
//
//   node_modules/node22/bin/node tests/workerd/startup.bench.mjs [runs=7]
//
// Two trivial Workers, bundled the same way (esbuild like wrangler):
//   with:    imports auth-session and constructs (then disposes) an AuthSession per request;
//   without: answers "ok" and imports nothing.
// One sample = a new Miniflare (a new workerd process: config, module compile, isolate,
// top-level evaluation, where the package compiles its wasm module and runs initSync) until
// the first response to GET / has arrived (so the first AuthSession was constructed), then
// dispose. The variants alternate, `runs` samples each; the cost is the difference of the
// medians, and (steadier on a busy machine) the median of the per-run differences. The second request on the same instance is timed as well: a warm isolate.
import { readFile, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { Miniflare, convertV4MiniflareOptions } from "miniflare";
import { bundleWorker, compatibilityDate, tempDir } from "./harness.mjs";

const runs = Number(process.argv[2] ?? 7);
const tmp = await tempDir("auth-session-startup-");
const sources = {
  with: `import { AuthSession } from "auth-session";
export default {
  fetch() {
    const s = new AuthSession({ host: "https://api.example.com", autoRefresh: false });
    s.dispose();
    return new Response("ok");
  },
};`,
  without: `export default { fetch() { return new Response("ok"); } };`,
};
const modules = {};
for (const [name, source] of Object.entries(sources)) {
  const entry = path.join(tmp.dir, `${name}.mjs`);
  await writeFile(entry, source);
  modules[name] = await bundleWorker({ entry, outdir: path.join(tmp.dir, name, "bundle"), usesPackage: name === "with" });
}

const date = await compatibilityDate();

/** CPU time (ms, all threads) of the workerd process this process started: steadier than
 *  wall time on a machine that other jobs load. Linux /proc only; null elsewhere. */
async function workerdCpuMs() {
  try {
    const children = [];
    for (const tid of await readdir(`/proc/${process.pid}/task`)) {
      const list = await readFile(`/proc/${process.pid}/task/${tid}/children`, "utf8");
      children.push(...list.split(/\s+/).filter(Boolean));
    }
    let ns = 0;
    let found = 0;
    for (const pid of children) {
      const comm = (await readFile(`/proc/${pid}/comm`, "utf8")).trim();
      if (comm !== "workerd") continue;
      found++;
      for (const tid of await readdir(`/proc/${pid}/task`)) {
        ns += Number((await readFile(`/proc/${pid}/task/${tid}/schedstat`, "utf8")).split(" ")[0]);
      }
    }
    return found === 1 ? ns / 1e6 : null;
  } catch {
    return null;
  }
}
async function sample(name) {
  const t0 = performance.now();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: modules[name],
      modulesRoot: path.dirname(modules[name][0].path),
      compatibilityDate: date,
      cf: false,
      enableDevRegistry: false,
      handleStructuredLogs: () => {},
    }),
  );
  const res = await mf.dispatchFetch("http://localhost/");
  const text = await res.text();
  const first = performance.now() - t0;
  const cpu = await workerdCpuMs();
  if (text !== "ok") throw new Error(`${name}: ${res.status} ${text}`);
  const t1 = performance.now();
  await (await mf.dispatchFetch("http://localhost/")).text();
  const warm = performance.now() - t1;
  await mf.dispose();
  return { first, warm, cpu };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
await sample("with"); // warm the disk cache and workerd binary once, untimed
await sample("without");
const results = { with: [], without: [] };
for (let i = 0; i < runs; i++) {
  for (const name of i % 2 ? ["without", "with"] : ["with", "without"]) results[name].push(await sample(name));
}
const fmt = (xs) => xs.map((x) => x.toFixed(0)).join(" ");
for (const name of ["with", "without"]) {
  const firsts = results[name].map((r) => r.first);
  console.log(
    `${name.padEnd(7)} start->first response median ${median(firsts).toFixed(1)} ms [${fmt(firsts)}]; ` +
      `warm request median ${median(results[name].map((r) => r.warm)).toFixed(2)} ms; ` +
      `workerd CPU to first response median ${median(results[name].map((r) => r.cpu)).toFixed(1)} ms`,
  );
}
const cpuPaired = results.with.map((r, i) => r.cpu - results.without[i].cpu);
console.log(
  `workerd CPU: difference of medians ${(median(results.with.map((r) => r.cpu)) - median(results.without.map((r) => r.cpu))).toFixed(1)} ms; ` +
    `median of per-run differences ${median(cpuPaired).toFixed(1)} ms [${fmt(cpuPaired)}]`,
);
const cost = median(results.with.map((r) => r.first)) - median(results.without.map((r) => r.first));
// Each run measures both variants back to back: the per-run difference cancels slow drifts
// of the machine's load (other builds on 2 cores), which the medians alone do not.
const paired = results.with.map((r, i) => r.first - results.without[i].first);
console.log(`import + instantiate + first construct: difference of medians ${cost.toFixed(1)} ms; ` +
  `median of per-run differences ${median(paired).toFixed(1)} ms [${fmt(paired)}] (${runs} runs each)`);

// The cost is small next to a workerd start (and its noise on a busy machine), so it is
// also measured amplified: one workerd with `isolates` copies of the Worker (each its own
// isolate, which compiles and instantiates its own wasm), timed from start until every
// copy has answered its first request. Per isolate: the difference / isolates.
const isolates = Number(process.env.ISOLATES ?? 20);
async function sampleMany(name) {
  const t0 = performance.now();
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      workers: Array.from({ length: isolates }, (_, i) => ({
        name: `w${i}`,
        modules: modules[name],
        modulesRoot: path.dirname(modules[name][0].path),
        compatibilityDate: date,
      })),
      cf: false,
      enableDevRegistry: false,
      handleStructuredLogs: () => {},
    }),
  );
  await Promise.all(
    Array.from({ length: isolates }, async (_, i) => {
      const w = await mf.getWorker(`w${i}`);
      const text = await (await w.fetch("http://localhost/")).text();
      if (text !== "ok") throw new Error(`${name} w${i}: ${text}`);
    }),
  );
  const ms = performance.now() - t0;
  const cpu = await workerdCpuMs();
  await mf.dispose();
  return { ms, cpu };
}
await sampleMany("with");
const many = { with: [], without: [] };
for (let i = 0; i < runs; i++) {
  for (const name of i % 2 ? ["without", "with"] : ["with", "without"]) many[name].push(await sampleMany(name));
}
for (const name of ["with", "without"]) {
  const ms = many[name].map((r) => r.ms);
  const cpu = many[name].map((r) => r.cpu);
  console.log(
    `${name.padEnd(7)} ${isolates} isolates start->all answered median ${median(ms).toFixed(1)} ms [${fmt(ms)}]; ` +
      `workerd CPU median ${median(cpu).toFixed(1)} ms [${fmt(cpu)}]`,
  );
}
for (const key of ["ms", "cpu"]) {
  const w = many.with.map((r) => r[key]);
  const wo = many.without.map((r) => r[key]);
  const paired = w.map((t, i) => (t - wo[i]) / isolates);
  console.log(
    `per isolate (${key === "ms" ? "wall" : "workerd CPU"}): difference of medians / ${isolates} = ` +
      `${((median(w) - median(wo)) / isolates).toFixed(1)} ms; median of per-run differences / ${isolates} = ` +
      `${median(paired).toFixed(1)} ms [${paired.map((x) => x.toFixed(1)).join(" ")}]`,
  );
}
await tmp.cleanup();
