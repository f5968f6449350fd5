import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { scanLedger } from '../../scripts/secret-scan.mjs';

describe('the whole-suite secret scan', () => {
  it('finds a recorded secret in a log or a dump, names where, and passes a clean ledger', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sy-ledger-'));
    try {
      const token = 'syd_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG';
      writeFileSync(join(dir, 'secrets-1.txt'), `${token}\nshort\n`);
      writeFileSync(join(dir, 'scanned-1-1.txt'), 'audit_log (postgres)\n[{"actor":"admin"}]\n');
      writeFileSync(join(dir, 'log-1.txt'), '{"msg":"request completed"}\n');
      assert.deepEqual(scanLedger(dir).hits, []);
      assert.equal(scanLedger(dir).secrets, 1, 'strings under 16 characters are not secrets');
      writeFileSync(join(dir, 'scanned-1-2.txt'), `error body of POST /api/v1/devices (400)\n{"message":"bad ${token}"}\n`);
      writeFileSync(join(dir, 'log-2.txt'), `{"msg":"oops","token":"${token}"}\n`);
      const hits = scanLedger(dir).hits;
      assert.equal(hits.length, 2);
      assert.ok(hits.some((h: string) => h.includes('error body of POST /api/v1/devices (400)')));
      assert.ok(hits.some((h: string) => h.includes('server log of test process 2')));
      assert.ok(hits.every((h: string) => !h.includes(token)), 'a hit never prints the secret');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
