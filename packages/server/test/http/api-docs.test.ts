import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { API_DOC_PATH, generateApiDocs } from '../../../../scripts/gen-api-docs.ts';

describe('docs/http-api.md', () => {
  it('is what scripts/gen-api-docs.ts generates from the routes', async () => {
    const expected = await generateApiDocs();
    const current = await readFile(API_DOC_PATH, 'utf8').catch(() => '(missing)');
    if (current === expected) return;
    const a = current.split('\n');
    const b = expected.split('\n');
    let line = 0;
    while (line < a.length && line < b.length && a[line] === b[line]) line++;
    assert.fail(
      `docs/http-api.md is out of date with the routes: run \`npm run docs:api\` and commit the result.\n` +
        `first difference at line ${line + 1}:\n  file:      ${a[line] ?? '(end of file)'}\n  generated: ${b[line] ?? '(end of file)'}`,
    );
  });
});
