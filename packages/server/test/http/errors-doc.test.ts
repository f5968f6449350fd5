import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { ERROR_CATALOGUE } from '../../src/errors.ts';

const DOC = new URL('../../../../docs/errors.md', import.meta.url);

/** The rows of the table in docs/errors.md: code → HTTP status (and whether the other columns are filled). */
async function documentedCodes(): Promise<Map<string, { status: number; meaning: string; action: string }>> {
  const text = await readFile(DOC, 'utf8');
  const rows = new Map<string, { status: number; meaning: string; action: string }>();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`([A-Z_]+)`\s*\|\s*(\d{3})\s*\|(.*)\|(.*)\|\s*$/.exec(line);
    if (!m) continue;
    assert.ok(!rows.has(m[1]!), `docs/errors.md lists ${m[1]} twice`);
    rows.set(m[1]!, { status: Number(m[2]), meaning: m[3]!.trim(), action: m[4]!.trim() });
  }
  return rows;
}

describe('docs/errors.md', () => {
  it('lists every catalogue code with its HTTP status, a meaning and what to do', async () => {
    const rows = await documentedCodes();
    for (const [code, { status }] of Object.entries(ERROR_CATALOGUE)) {
      const row = rows.get(code);
      assert.ok(row, `docs/errors.md has no row for ${code}`);
      assert.equal(row.status, status, `docs/errors.md gives ${code} status ${row.status}, the catalogue ${status}`);
      assert.ok(row.meaning.length > 10 && row.action.length > 10, `${code}: fill in the meaning and what to do`);
    }
  });

  it('lists no code that the catalogue lacks', async () => {
    const rows = await documentedCodes();
    for (const code of rows.keys()) assert.ok(code in ERROR_CATALOGUE, `docs/errors.md lists ${code}, which is not in ERROR_CATALOGUE`);
    assert.equal(rows.size, Object.keys(ERROR_CATALOGUE).length);
  });
});
