/** `switchyard-agent --ca-file`: checked at start, before anything connects — exit 2 with the path and the problem. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = fileURLToPath(new URL('../bin/switchyard-agent.mjs', import.meta.url));
const TOKEN = 'sy-device-token-do-not-print';

describe('switchyard-agent --ca-file (CLI)', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sy-ca-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const run = (env: Record<string, string>) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('SWITCHYARD_') && k !== 'LOG_LEVEL'));
    return spawnSync(process.execPath, [BIN], {
      // Port 1 on loopback: nothing answers; the CA check must fail before the agent asks the API anything.
      env: { ...clean, SWITCHYARD_API_URL: 'http://127.0.0.1:1', SWITCHYARD_DEVICE_UUID: 'dev-ca', SWITCHYARD_DEVICE_TOKEN: TOKEN, SWITCHYARD_STATE_DIR: join(dir, 'state'), LOG_LEVEL: 'silent', ...env },
      encoding: 'utf8',
      timeout: 20_000,
    });
  };

  it('lists --ca-file and SWITCHYARD_CA_FILE in --help', () => {
    const r = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /--ca-file <file> +PEM CA bundle trusted for mqtts\/wss brokers.*\[SWITCHYARD_CA_FILE\]/);
  });

  it('exits 2 when the file does not exist', () => {
    const missing = join(dir, 'missing-ca.pem');
    const r = run({ SWITCHYARD_CA_FILE: missing });
    assert.equal(r.status, 2, `${r.stdout}\n${r.stderr}`);
    assert.ok(r.stderr.includes(`--ca-file: ${JSON.stringify(missing)}: file not found`), r.stderr);
    assert.ok(!r.stderr.includes(TOKEN) && !r.stdout.includes(TOKEN));
  });

  it('exits 2 when the file is not PEM', async () => {
    const file = join(dir, 'not-pem.pem');
    await writeFile(file, 'this is not a certificate\n');
    const r = run({ SWITCHYARD_CA_FILE: file });
    assert.equal(r.status, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /--ca-file: ".*not-pem\.pem": not a PEM CA bundle: it holds no PEM certificate/);
  });
});
