// The whole-suite secret scan (see test/helpers/secret-ledger.ts): every secret the tests recorded must appear in
// none of the recorded logs, table dumps and error bodies. Prints one summary line; returns the hits.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export function scanLedger(dir) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return { secrets: 0, files: 0, bytes: 0, hits: [] };
  }
  const secrets = new Set();
  for (const n of names.filter((n) => n.startsWith('secrets-'))) {
    for (const line of readFileSync(join(dir, n), 'utf8').split('\n')) if (line.length >= 16) secrets.add(line);
  }
  const hits = [];
  let bytes = 0;
  const scanned = names.filter((n) => n.startsWith('scanned-') || n.startsWith('log-'));
  for (const n of scanned) {
    const text = readFileSync(join(dir, n), 'utf8');
    bytes += text.length;
    const what = n.startsWith('log-') ? `server log of test process ${n.slice(4, -4)}` : text.slice(0, text.indexOf('\n'));
    for (const s of secrets) {
      if (text.includes(s)) hits.push(`${s.slice(0, 6)}… (${s.length} chars) in ${what}`);
    }
  }
  return { secrets: secrets.size, files: scanned.length, bytes, hits };
}
