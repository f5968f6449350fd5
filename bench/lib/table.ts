/** Markdown tables for benchmark output. */

export type Cell = string | number | null | undefined;

function show(c: Cell): string {
  if (c === null || c === undefined) return '–';
  if (typeof c === 'number') {
    if (!Number.isFinite(c)) return '–';
    return Number.isInteger(c) ? String(c) : c.toFixed(1);
  }
  return c;
}

/** A Markdown table; numeric columns (every non-empty cell a number) are right-aligned. */
export function markdownTable(headers: readonly string[], rows: readonly Cell[][]): string {
  const text = rows.map((r) => headers.map((_, i) => show(r[i])));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => r[i] == null || typeof r[i] === 'number'));
  const width = headers.map((h, i) => Math.max(h.length, 3, ...text.map((r) => r[i]!.length)));
  const pad = (s: string, i: number): string => (numeric[i] ? s.padStart(width[i]!) : s.padEnd(width[i]!));
  const line = (cells: string[]): string => `| ${cells.map(pad).join(' | ')} |`;
  const rule = `|${width.map((w, i) => (numeric[i] ? `${'-'.repeat(w + 1)}:` : `${'-'.repeat(w + 2)}`)).join('|')}|`;
  return [line([...headers]), rule, ...text.map(line)].join('\n');
}
