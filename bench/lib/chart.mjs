// bench/chart.svg from bench/results.json's data: plain string SVG, no dependency.
// Panel 1: request overhead (throughput ÷ raw fetch, per concurrency).
// Panel 2: refresh storm (time ÷ the same calls with a valid token, per size and expiry
// mode), each bar labelled with the refreshes sent and the calls lost.

const COLORS = {
  handwritten: "#8d8d8d",
  contract: "#5a5a5a",
  ky: "#e0a030",
  axios: "#5b8def",
  "auth-session": "#2a9d5c",
};
const NAMES = {
  handwritten: "hand-written (floor)",
  contract: "hand-written (contract)",
  ky: "ky + hooks",
  axios: "axios + axios-auth-refresh",
  "auth-session": "auth-session (ours)",
};

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

function text(x, y, s, { size = 12, anchor = "start", weight = "normal", fill = "#222", rotate } = {}) {
  const t = rotate ? ` transform="rotate(${rotate} ${x} ${y})"` : "";
  return `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" font-size="${size}" text-anchor="${anchor}" font-weight="${weight}" fill="${fill}"${t}>${esc(s)}</text>`;
}

/**
 * groups: [{ label, bars: [{ key, value, label?, bad? }] }]
 * lines:  [{ value, label, dash }]
 */
function panel({ x, y, w, h, title, subtitle, groups, lines = [], yMax, yLabel, labelRoom = 0 }) {
  const out = [];
  const left = x + 56;
  const plotW = w - 56 - 120; // the right margin holds the reference lines' labels
  const top = y + 44;
  const plotH = h - 44 - 46;
  const base = top + plotH;
  // `labelRoom` px above the tallest possible bar stay free for the rotated bar labels.
  const barH = plotH - labelRoom;
  const sy = (v) => base - (Math.min(v, yMax) / yMax) * barH;
  const syGrid = (v) => base - (v / yMax) * barH;
  out.push(text(x, y + 16, title, { size: 15, weight: "bold" }));
  if (subtitle) out.push(text(x, y + 33, subtitle, { size: 11, fill: "#555" }));
  // Grid and axis.
  const step = yMax > 4 ? 1 : yMax > 2 ? 0.5 : 0.25;
  const gridMax = yMax + (labelRoom / barH) * yMax;
  for (let v = 0; v <= gridMax + 1e-9; v += step) {
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${syGrid(v).toFixed(1)}" y2="${syGrid(v).toFixed(1)}" stroke="#e4e4e4"/>`);
    out.push(text(left - 6, syGrid(v) + 4, `${v.toFixed(2)}×`, { size: 10, anchor: "end", fill: "#666" }));
  }
  out.push(text(x + 12, top + plotH / 2, yLabel, { size: 11, anchor: "middle", fill: "#444", rotate: -90 }));
  // Bars.
  const gw = plotW / Math.max(1, groups.length);
  groups.forEach((g, gi) => {
    const n = Math.max(1, g.bars.length);
    const bw = Math.min(26, (gw - 16) / n);
    const gx = left + gi * gw + (gw - bw * n) / 2;
    g.bars.forEach((b, bi) => {
      const bx = gx + bi * bw;
      if (b.value == null) {
        out.push(text(bx + bw / 2, base - 4, "n/a", { size: 9, anchor: "middle", fill: "#999", rotate: -90 }));
        return;
      }
      const by = sy(b.value);
      const stroke = b.bad ? ` stroke="#c0392b" stroke-width="2"` : "";
      out.push(`<rect x="${(bx + 1).toFixed(1)}" y="${by.toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(base - by).toFixed(1)}" fill="${COLORS[b.key] ?? "#999"}"${stroke}><title>${esc(`${NAMES[b.key] ?? b.key}: ${b.value.toFixed(3)}×${b.label ? ` (${b.label})` : ""}`)}</title></rect>`);
      const label = [b.value > yMax ? `${b.value.toFixed(1)}× (clipped)` : b.showValue ? `${b.value.toFixed(2)}×` : null, b.label]
        .filter(Boolean)
        .join(" · ");
      if (label) {
        out.push(text(bx + bw / 2 + 3, by - 4, label, { size: 9, anchor: "start", fill: b.bad ? "#c0392b" : "#333", rotate: -90 }));
      }
    });
    out.push(text(left + gi * gw + gw / 2, base + 16, g.label, { size: 11, anchor: "middle" }));
    if (g.sublabel) out.push(text(left + gi * gw + gw / 2, base + 30, g.sublabel, { size: 10, anchor: "middle", fill: "#666" }));
  });
  for (const l of lines) {
    const ly = sy(l.value).toFixed(1);
    out.push(`<line x1="${left}" x2="${left + plotW}" y1="${ly}" y2="${ly}" stroke="${l.color ?? "#c0392b"}" stroke-dasharray="${l.dash ?? "5 4"}"/>`);
    out.push(text(left + plotW + 6, Number(ly) + 4 + (l.dy ?? 0), l.label, { size: 10, anchor: "start", fill: l.color ?? "#c0392b" }));
  }
  out.push(`<line x1="${left}" x2="${left + plotW}" y1="${base}" y2="${base}" stroke="#333"/>`);
  return out.join("\n");
}

export function renderChart(results) {
  const W = 980;
  const parts = [];
  const meta = results.meta;
  const clients = ["handwritten", "contract", "ky", "axios", "auth-session"];

  // Panel 1: throughput ratio to raw fetch.
  const tp = results.throughput?.summary ?? [];
  const concs = [...new Set(tp.map((r) => r.concurrency))];
  const g1 = concs.map((c) => ({
    label: `concurrency ${c}`,
    bars: clients.map((k) => {
      const r = tp.find((t) => t.concurrency === c && t.contender === k);
      return { key: k, value: r?.ratioToRaw ?? null, showValue: true };
    }),
  }));
  const max1 = Math.max(1.1, ...g1.flatMap((g) => g.bars.map((b) => b.value ?? 0)));
  let y = 70;
  const h1 = 320;
  if (g1.length) {
    parts.push(
      panel({
        x: 20, y, w: W - 40, h: h1,
        title: "Per-request overhead: authenticated GET throughput ÷ raw fetch (higher is better)",
        subtitle: "median of per-round ratios; contenders interleaved in each round against one local server in its own process",
        groups: g1,
        lines: [
          { value: 1, label: "raw fetch = 1.00×", color: "#333", dash: "2 3", dy: -5 },
          { value: 0.97, label: "goal ≥ 0.97×", dy: 6 },
        ],
        yMax: Math.ceil(max1 * 4) / 4,
        yLabel: "throughput ÷ raw fetch",
        labelRoom: 40,
      }),
    );
    y += h1 + 20;
  }

  // Panel 2: storm time ratio, per size and mode.
  const st = results.storm?.summary ?? [];
  const sizes = [...new Set(st.map((r) => r.n))].sort((a, b) => a - b);
  const modes = [
    ["client-expired", "expired, client knows"],
    ["server-expired", "expired on server → 401"],
  ];
  const g2 = [];
  for (const n of sizes) {
    for (const [mode, mlabel] of modes) {
      g2.push({
        label: `${n.toLocaleString("en-US")} calls`,
        sublabel: mlabel,
        bars: clients.map((k) => {
          const r = st.find((s) => s.n === n && s.mode === mode && s.contender === k);
          if (!r) return { key: k, value: null };
          const bad = r.refreshesMax !== 1 || r.lostMax !== 0;
          const refreshes = r.refreshesMin === r.refreshesMax ? `${r.refreshesMax}` : `${r.refreshesMin}–${r.refreshesMax}`;
          return { key: k, value: r.ratioToValid, bad, showValue: true, label: `${refreshes} refresh · ${r.lostMax} lost` };
        }),
      });
    }
  }
  const vals2 = g2.flatMap((g) => g.bars.map((b) => b.value ?? 0));
  const yMax2 = Math.min(4, Math.max(1.5, Math.ceil(Math.max(...vals2, 1) * 2) / 2));
  const h2 = 440;
  if (g2.length) {
    parts.push(
      panel({
        x: 20, y, w: W - 40, h: h2,
        title: "Refresh storm: time of N concurrent calls with an expired token ÷ the same calls with a valid one",
        subtitle: "bar label: refresh requests the server saw (must be 1) · calls that rejected or got a non-200 (must be 0); red outline = wrong",
        groups: g2,
        lines: [{ value: 1, label: "valid token = 1.00×", color: "#333", dash: "2 3" }],
        yMax: yMax2,
        yLabel: "time ÷ valid-token time",
        labelRoom: 130,
      }),
    );
    y += h2 + 10;
  }

  // Legend and footer.
  let lx = 20;
  const legend = clients.map((k) => {
    const s = `<rect x="${lx}" y="${y + 4}" width="12" height="12" fill="${COLORS[k]}"/>${text(lx + 17, y + 14, NAMES[k], { size: 12 })}`;
    lx += 40 + NAMES[k].length * 6.6;
    return s;
  });
  parts.push(legend.join("\n"));
  y += 30;
  parts.push(
    text(20, y + 8, `${meta.date} · ${meta.cpu} · nproc ${meta.nproc} · Node ${meta.node} · ${meta.quick ? "--quick run" : "full run"} · a shared, noisy machine: read the ratios, not the absolute numbers`, { size: 10, fill: "#666" }),
  );
  const H = y + 20;
  const head = text(20, 30, "auth-session benchmark (bash bench/run.sh)", { size: 18, weight: "bold" });
  const sub = text(20, 50, "raw fetch is the floor; the hand-written client is what a user would write instead of installing auth-session", { size: 12, fill: "#555" });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif">
<rect width="100%" height="100%" fill="#fff"/>
${head}
${sub}
${parts.join("\n")}
</svg>
`;
}
