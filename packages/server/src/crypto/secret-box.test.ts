import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SecretBoxError, createSecretBox, loadOrCreateSecretKey } from './secret-box.ts';

describe('createSecretBox', () => {
  const box = createSecretBox(randomBytes(32));

  it('round-trips text, with a fresh IV every time', () => {
    for (const plain of ['', 'hunter2', 'ünïcödé ✓', 'x'.repeat(10_000)]) {
      const a = box.encrypt(plain);
      const b = box.encrypt(plain);
      assert.notEqual(a, b);
      assert.match(a, /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]*$/);
      assert.equal(box.decrypt(a), plain);
      if (plain !== '') assert.ok(!a.includes(plain));
    }
  });

  it('refuses another key, a tampered value and a malformed one', () => {
    const enc = box.encrypt('hunter2');
    assert.throws(() => createSecretBox(randomBytes(32)).decrypt(enc), SecretBoxError);
    const parts = enc.split('.');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0] = body[0]! ^ 1;
    assert.throws(() => box.decrypt([parts[0], parts[1], parts[2], body.toString('base64url')].join('.')), /altered/);
    assert.throws(() => box.decrypt('v2.a.b.c'), /v1 format/);
    assert.throws(() => box.decrypt('hunter2'), SecretBoxError);
    assert.throws(() => box.decrypt('v1.AAAA.BBBB.CCCC'), /malformed/);
  });

  it('refuses a key that is not 32 bytes', () => {
    assert.throws(() => createSecretBox(randomBytes(16)), /32 bytes/);
  });
});

describe('loadOrCreateSecretKey', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sy-secret-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('derives the same key from the same SWITCHYARD_SECRET, without touching the disk', async () => {
    const sub = path.join(dir, 'derived');
    const a = await loadOrCreateSecretKey({ secret: 'correct horse battery staple', dataDir: sub });
    const b = await loadOrCreateSecretKey({ secret: 'correct horse battery staple', dataDir: sub });
    const c = await loadOrCreateSecretKey({ secret: 'another passphrase entirely', dataDir: sub });
    assert.equal(a.length, 32);
    assert.ok(a.equals(b));
    assert.ok(!a.equals(c));
    await assert.rejects(stat(sub), { code: 'ENOENT' });
  });

  it('creates <dataDir>/secret.key with mode 0600 once, then reads it back', async () => {
    const sub = path.join(dir, 'file');
    const first = await loadOrCreateSecretKey({ dataDir: sub });
    const again = await loadOrCreateSecretKey({ dataDir: sub });
    assert.ok(first.equals(again));
    const file = path.join(sub, 'secret.key');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.ok(Buffer.from((await readFile(file, 'utf8')).trim(), 'base64').equals(first));
  });

  it('refuses a damaged key file with a message saying what to do', async () => {
    const sub = path.join(dir, 'damaged');
    await loadOrCreateSecretKey({ dataDir: sub });
    await writeFile(path.join(sub, 'secret.key'), 'c2hvcnQ=\n');
    await assert.rejects(loadOrCreateSecretKey({ dataDir: sub }), /must hold 32 bytes.*SWITCHYARD_SECRET/);
  });
});
