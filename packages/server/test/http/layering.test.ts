import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';

const SRC = new URL('../../src/', import.meta.url);

describe('route files', () => {
  it('import neither pg, PGlite nor MQTT (they validate and map; services and stores do the rest)', async () => {
    const files = (await readdir(SRC, { recursive: true })).filter((f) => f.endsWith('.routes.ts'));
    assert.ok(files.length >= 3);
    for (const file of files) {
      const text = await readFile(new URL(file, SRC), 'utf8');
      const imports = [...text.matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]!);
      for (const spec of imports) {
        assert.ok(!/^(pg|mqtt|aedes|@electric-sql\/pglite)(\/|$)/.test(spec), `${file} imports ${spec}`);
        assert.ok(!/\/db\/(pg-db|pglite-db)\.ts$/.test(spec) && !/broker-pool/.test(spec), `${file} imports ${spec}`);
      }
    }
  });
});
