/** `switchyard-agent` as a process: --help, and configuration errors (exit 2, precise, never the token). */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/switchyard-agent.mjs', import.meta.url));
const run = (args: string[], env: Record<string, string> = {}) => {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHYARD_') && k !== 'LOG_LEVEL'));
  return spawnSync(process.execPath, [BIN, ...args], { env: { ...clean, ...env }, encoding: 'utf8', timeout: 20_000 });
};

describe('switchyard-agent (CLI)', () => {
  it('prints the options with --help and exits 0', () => {
    const r = run(['--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: switchyard-agent/);
    for (const flag of ['--api-url', '--device-uuid', '--device-token', '--state-dir', '--heartbeat-ms']) assert.ok(r.stdout.includes(flag), flag);
  });

  it('exits 2 naming every bad option, and never prints the token', () => {
    const token = 'sy-device-token-do-not-print';
    const r = run(['--device-uuid', 'bad/uuid', '--heartbeat-ms', '5', '--device-token', token]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--api-url: required/);
    assert.match(r.stderr, /--device-uuid: expected 1–128 characters/);
    assert.match(r.stderr, /--heartbeat-ms: expected 0 \(off\) or 10–86400000 ms, got 5/);
    assert.ok(!r.stderr.includes(token) && !r.stdout.includes(token));
  });

  it('exits 2 on an unknown flag without echoing any value', () => {
    const r = run(['--api-url', 'http://127.0.0.1:1', '--device-uuid', 'd1', '--device-token=abc', '--bogus=x']);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--bogus: unknown option/);
    assert.ok(!r.stderr.includes('abc'));
  });
});
