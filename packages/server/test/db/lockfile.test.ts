import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { acquireDirLock, LOCK_FILE } from '../../src/db/lockfile.ts';
import { openDb } from '../../src/db/open-db.ts';
import { loadMigrations } from '../../src/db/migrate.ts';
import { createPgliteDb } from '../../src/db/pglite-db.ts';
import { createLogger, silentLogger } from '../../src/log.ts';

let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'switchyard-lock-'));
});
after(async () => {
  await rm(root, { recursive: true, force: true });
});

let dirSeq = 0;
const freshDir = () => join(root, `d${++dirSeq}`);

function captureLog() {
  const lines: string[] = [];
  return { lines, log: createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } }) };
}

/** A child process that lives until killed. */
async function liveChild() {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await new Promise<void>((resolve, reject) => child.once('spawn', resolve).once('error', reject));
  return {
    pid: child.pid!,
    async kill() {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}

describe('acquireDirLock', () => {
  it('creates the lockfile with our pid and removes it on release', async () => {
    const dir = freshDir();
    const lock = await acquireDirLock(dir);
    assert.equal(await readFile(join(dir, LOCK_FILE), 'utf8'), `${process.pid}\n`);
    await lock.release();
    await lock.release(); // idempotent
    assert.equal(existsSync(join(dir, LOCK_FILE)), false);
  });

  it('refuses a second lock on the same directory from this process', async () => {
    const dir = freshDir();
    const lock = await acquireDirLock(dir);
    await assert.rejects(acquireDirLock(dir), { message: `data directory ${dir} is in use by process ${process.pid}` });
    await lock.release();
    await (await acquireDirLock(dir)).release();
  });

  it('refuses a directory locked by another live process, and takes it over once that process is gone', async () => {
    const dir = freshDir();
    const child = await liveChild();
    try {
      await acquireDirLock(dir).then((l) => l.release()); // creates dir
      await writeFile(join(dir, LOCK_FILE), `${child.pid}\n`);
      await assert.rejects(acquireDirLock(dir), { message: `data directory ${dir} is in use by process ${child.pid}` });
    } finally {
      await child.kill();
    }
    const { lines, log } = captureLog();
    const lock = await acquireDirLock(dir, { log });
    assert.equal(await readFile(join(dir, LOCK_FILE), 'utf8'), `${process.pid}\n`);
    assert.ok(lines.some((l) => l.includes('taking over stale lock') && l.includes(String(child.pid))), lines.join(''));
    await lock.release();
  });

  it('takes over a lock left with our own pid by an earlier process (container restart)', async () => {
    const dir = freshDir();
    await acquireDirLock(dir).then((l) => l.release());
    await writeFile(join(dir, LOCK_FILE), `${process.pid}\n`);
    const lock = await acquireDirLock(dir);
    await lock.release();
  });

  it('takes over an empty lockfile after giving a writer time', async () => {
    const dir = freshDir();
    await acquireDirLock(dir).then((l) => l.release());
    await writeFile(join(dir, LOCK_FILE), '');
    const lock = await acquireDirLock(dir);
    assert.equal(await readFile(join(dir, LOCK_FILE), 'utf8'), `${process.pid}\n`);
    await lock.release();
  });

  it('lets exactly one of several concurrent contenders take a stale lock', async () => {
    const dir = freshDir();
    const child = await liveChild();
    await child.kill();
    await acquireDirLock(dir).then((l) => l.release());
    await writeFile(join(dir, LOCK_FILE), `${child.pid}\n`);
    const results = await Promise.allSettled([acquireDirLock(dir), acquireDirLock(dir), acquireDirLock(dir)]);
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok'))));
    for (const r of results) if (r.status === 'rejected') assert.match(String(r.reason), /is in use by process/);
    await (won[0] as PromiseFulfilledResult<{ release(): Promise<void> }>).value.release();
  });
  it('lets exactly one of several processes take a stale lock at once', async () => {
    const dir = freshDir();
    const dead = await liveChild();
    await dead.kill();
    await acquireDirLock(dir).then((l) => l.release());
    await writeFile(join(dir, LOCK_FILE), `${dead.pid}\n`);
    const lockModule = new URL('../../src/db/lockfile.ts', import.meta.url).href;
    // Each child tries once, reports, and holds what it got until its stdin closes.
    const script = `
      const { acquireDirLock } = await import(${JSON.stringify(lockModule)});
      let lock;
      try { lock = await acquireDirLock(${JSON.stringify(dir)}); process.stdout.write('ok\\n'); }
      catch (err) { process.stdout.write('refused: ' + err.message + '\\n'); }
      process.stdin.resume();
      process.stdin.on('end', async () => { await lock?.release(); process.exit(0); });`;
    const children = Array.from({ length: 3 }, () =>
      spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] }),
    );
    const answers = await Promise.all(
      children.map(
        (c) =>
          new Promise<string>((resolve, reject) => {
            let out = '';
            c.stdout.on('data', (d: Buffer) => {
              out += d.toString();
              if (out.includes('\n')) resolve(out.trim());
            });
            c.once('error', reject);
            c.once('exit', (code) => reject(new Error(`child exited (${code}) before answering: ${out}`)));
          }),
      ),
    );
    await Promise.all(
      children.map((c) => {
        const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
        c.stdin.end();
        return exited;
      }),
    );
    assert.equal(answers.filter((a) => a === 'ok').length, 1, JSON.stringify(answers));
    for (const a of answers.filter((x) => x !== 'ok')) assert.match(a, /^refused: data directory .* is in use by process \d+$/);
    assert.equal(existsSync(join(dir, LOCK_FILE)), false, 'the winner released it');
  });
});

describe('openDb without a database URL (PGlite in <dataDir>/pgdata)', () => {
  it('creates, migrates, refuses a second open, releases on close and reopens', async (t) => {
    const dataDir = freshDir();
    const pgdata = join(dataDir, 'pgdata');
    let started = performance.now();
    const db = await openDb({ dataDir, log: silentLogger() });
    t.diagnostic(`fresh PGlite open + migrate: ${Math.round(performance.now() - started)} ms`);
    try {
      assert.equal(db.kind, 'pglite');
      assert.equal(await readFile(join(pgdata, LOCK_FILE), 'utf8'), `${process.pid}\n`);
      await db.query('INSERT INTO mqtt_broker_config (name, protocol, host, port) VALUES ($1, $2, $3, $4)', ['kept', 'mqtt', 'h', 1883]);
      await assert.rejects(createPgliteDb(pgdata), { message: `data directory ${pgdata} is in use by process ${process.pid}` });
    } finally {
      await db.close();
    }
    assert.equal(existsSync(join(pgdata, LOCK_FILE)), false);

    started = performance.now();
    const again = await openDb({ dataDir, log: silentLogger() });
    t.diagnostic(`reopen + migrate (nothing to apply): ${Math.round(performance.now() - started)} ms`);
    try {
      assert.equal((await again.query('SELECT version FROM schema_migrations')).rowCount, (await loadMigrations()).length);
      assert.deepEqual((await again.query('SELECT name FROM mqtt_broker_config')).rows, [{ name: 'kept' }]);
    } finally {
      await again.close();
    }
  });
});
