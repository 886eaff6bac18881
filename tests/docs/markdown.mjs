// The little Markdown the documentation tests need (not a test file: node --test picks up
// *.test.mjs only): fenced code blocks with their info strings, tables, links, headings.

/**
 * The fenced code blocks of `text`, in order: `{ lang, tags, mode, code, line }`. `line` is
 * the 1-based line of the opening fence; `lang` the info string's first word (lower-cased;
 * `javascript`, `mjs` and `cjs` count as `js`); `tags` the rest. `mode` (for js blocks):
 * the first tag, or `node` when there is none (`cjs` as a language is the `cjs` mode).
 * Fences may be indented (inside a list) and use ``` or ~~~; a closing fence is the same
 * character, at least as long, alone on its line.
 */
export function extractBlocks(text) {
  const lines = text.split("\n");
  const blocks = [];
  let open = null;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (!open) {
      const m = /^( {0,3})(`{3,}|~{3,})\s*([^`]*)$/.exec(line);
      if (!m) continue;
      const [first = "", ...tags] = m[3].trim().split(/\s+/).filter(Boolean);
      open = { indent: m[1].length, fence: m[2], info: m[3].trim(), first: first.toLowerCase(), tags, line: i + 1, body: [] };
      continue;
    }
    const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
    if (close && close[1][0] === open.fence[0] && close[1].length >= open.fence.length) {
      const lang = ["javascript", "mjs", "cjs"].includes(open.first) ? "js" : open.first;
      const mode = open.first === "cjs" ? "cjs" : (open.tags[0] ?? "node");
      const code = open.body.map((l) => l.slice(Math.min(open.indent, l.length - l.trimStart().length))).join("\n");
      blocks.push({ lang, tags: open.tags, mode, info: open.info, code: code + "\n", line: open.line });
      open = null;
      continue;
    }
    open.body.push(line);
  }
  if (open) throw new Error(`unclosed code fence opened on line ${open.line}`);
  return blocks;
}

/** `text` with the lines of its fenced code blocks (fences included) left out, so prose checks do not see code. */
export function withoutCode(text) {
  const out = [];
  let fence = null;
  for (const line of text.split("\n")) {
    if (!fence) {
      const open = /^ {0,3}(`{3,}|~{3,})/.exec(line);
      if (open) fence = open[1];
      else out.push(line);
    } else {
      const close = /^ {0,3}(`{3,}|~{3,})\s*$/.exec(line);
      if (close && close[1][0] === fence[0] && close[1].length >= fence.length) fence = null;
    }
  }
  return out.join("\n");
}

/** The Markdown links and images of `text` outside code blocks: their targets. */
export function linkTargets(text) {
  return [...withoutCode(text).matchAll(/!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]);
}

/**
 * The section under the first heading matching `pattern`, up to the next heading of the same
 * or a higher level, without its code blocks; null when no heading matches.
 */
export function section(text, pattern) {
  const lines = withoutCode(text).split("\n");
  let start = -1;
  let level = 0;
  for (let i = 0; i < lines.length; i++) {
    const m = /^(#{1,6})\s+(.*)$/.exec(lines[i]);
    if (!m) continue;
    if (start < 0 && pattern.test(m[2])) {
      start = i;
      level = m[1].length;
    } else if (start >= 0 && m[1].length <= level) {
      return lines.slice(start, i).join("\n");
    }
  }
  return start < 0 ? null : lines.slice(start).join("\n");
}

/** The first cell of every body row (not header, not separator) of the Markdown tables in `text`. */
export function firstCells(text) {
  const lines = withoutCode(text).split("\n");
  const separator = (line) => /^\s*\|(\s*:?-{3,}:?\s*\|)+\s*$/.test(line ?? "");
  const cells = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*\|([^|]*)\|/.exec(lines[i]);
    if (!m || separator(lines[i]) || separator(lines[i + 1])) continue;
    cells.push(m[1].trim());
  }
  return cells;
}
