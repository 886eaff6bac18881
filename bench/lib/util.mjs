// Small helpers shared by bench/run.mjs: statistics, formatting, plain-text tables.

export function median(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

export function max(values) {
  const v = values.filter((x) => typeof x === "number" && Number.isFinite(x));
  return v.length ? Math.max(...v) : null;
}

/** The list rotated left by `by`: round r starts with a different contender, so none is
 *  always first (cold machine) or last (warm, or hot). */
export function rotate(list, by) {
  const k = ((by % list.length) + list.length) % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

export const fmt = {
  int: (n) => (n == null ? "—" : Math.round(n).toLocaleString("en-US")),
  ms: (n, digits = 1) => (n == null ? "—" : `${n.toFixed(digits)} ms`),
  ratio: (n) => (n == null ? "—" : `${n.toFixed(3)}×`),
  kb: (bytes) => (bytes == null ? "—" : `${(bytes / 1000).toFixed(1)} KB`),
  bytes: (bytes) => (bytes == null ? "—" : `${Math.round(bytes).toLocaleString("en-US")} B`),
  mb: (bytes) => (bytes == null ? "—" : `${(bytes / 1e6).toFixed(1)} MB`),
  mark: (ok) => (ok == null ? "·" : ok ? "✓" : "✗"),
};

/**
 * Renders rows (arrays of strings) under a header as an aligned plain-text table.
 * `align` is a string of 'l'/'r' per column (default: first left, the rest right).
 */
export function table(title, header, rows, { align, notes = [] } = {}) {
  const cols = header.length;
  const al = align ?? `l${"r".repeat(cols - 1)}`;
  const width = (s) => [...String(s)].length;
  const widths = header.map((h, i) => Math.max(width(h), ...rows.map((r) => width(r[i] ?? ""))));
  const pad = (s, i) => {
    const str = String(s ?? "");
    const fill = " ".repeat(widths[i] - width(str));
    return al[i] === "l" ? str + fill : fill + str;
  };
  const line = (r) => `  ${r.map(pad).join("  ")}`.trimEnd();
  const out = [`\n${title}`, line(header), `  ${widths.map((w) => "─".repeat(w)).join("  ")}`];
  for (const r of rows) out.push(line(r));
  for (const n of notes) out.push(`  ${n}`);
  return out.join("\n");
}
