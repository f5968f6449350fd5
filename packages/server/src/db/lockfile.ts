/**
 * A cross-process lock on a data directory: `<dir>/switchyard.lock`, created exclusively (`wx`), holding the
 * owner's pid. PGlite has no lock of its own, and two processes writing one PGlite directory corrupt it.
 *
 * A lock whose pid is no longer alive (a crash, a kill -9) is stale and taken over, with a log line.
 * Limits: the pid check only means something on one host (not a directory shared between machines), and a
 * dead owner's pid reused by an unrelated live process keeps the lock held until that process exits or the
 * file is removed by hand.
 */
import { mkdir, open, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';

export const LOCK_FILE = 'switchyard.lock';

export interface DirLock {
  /** The lockfile's path. */
  readonly path: string;
  /** Removes the lockfile if it is still ours. Idempotent. */
  release(): Promise<void>;
}

/**
 * Lockfiles this process holds. A lockfile with our own pid that is not in here was left by an earlier
 * process that had the same pid — the usual case in a container, where the server is pid 1 on every start.
 */
const heldHere = new Set<string>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else. ESRCH: no such process.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readPid(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8');
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Takes the lock on `dir` (creating `dir` if needed), or throws
 * `data directory <dir> is in use by process <pid>` when a live process holds it.
 */
export async function acquireDirLock(dir: string, opts: { log?: Logger } = {}): Promise<DirLock> {
  const log = (opts.log ?? silentLogger()).child({ component: 'dir-lock' });
  const path = join(dir, LOCK_FILE);
  await mkdir(dir, { recursive: true });
  // Contenders inside this process take turns: our pid in a lockfile then means "held here" or "left by an
  // earlier process with our pid", never "another call of ours half-way through creating it".
  const previous = acquiringHere.get(path) ?? Promise.resolve();
  const mine = previous.then(() => acquire(dir, path, log));
  const settled = mine.then(
    () => undefined,
    () => undefined,
  );
  acquiringHere.set(path, settled);
  try {
    return await mine;
  } finally {
    if (acquiringHere.get(path) === settled) acquiringHere.delete(path);
  }
}

/** In-process queue of acquisitions, per lockfile path. */
const acquiringHere = new Map<string, Promise<void>>();

async function acquire(dir: string, path: string, log: Logger): Promise<DirLock> {
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
      } catch (err) {
        await unlink(path).catch((unlinkErr: unknown) => log.warn({ err: unlinkErr, path }, 'could not remove a half-written lockfile'));
        throw err;
      } finally {
        await fh.close();
      }
      heldHere.add(path);
      return makeLock(path, log);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new Error(`cannot create lockfile ${path}: ${(err as Error).message}`, { cause: err });
      }
    }

    let pid: number | undefined;
    try {
      pid = await readPid(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile: try again
      throw new Error(`cannot read lockfile ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (pid === undefined) {
      // Created with `wx` but the pid is not written yet (another process is mid-acquire), or a crash left it
      // empty. Give a writer time; after ~1 s treat it as stale.
      if (attempt < 10) {
        await sleep(100);
        continue;
      }
    } else if (pid === process.pid ? heldHere.has(path) : isAlive(pid)) {
      throw new Error(`data directory ${dir} is in use by process ${pid}`);
    }

    // Stale. Remove it only while holding the takeover lock, and only if it still holds the pid we judged:
    // without that, a contender that judged the same stale file could delete a fresh lock created meanwhile.
    const tookOver = await withTakeoverLock(path, log, async () => {
      let current: number | undefined;
      try {
        current = await readPid(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
      if (current !== pid) return false; // someone else took it over already: start again
      await unlink(path);
      return true;
    });
    if (tookOver) {
      log.warn({ dir, stalePid: pid ?? null }, `taking over stale lock of data directory ${dir} (process ${pid ?? '?'} is gone)`);
    }
  }
  throw new Error(`could not acquire lockfile ${path}: too much contention`);
}

/** Runs `fn` while holding `<lockfile>.takeover` (created with `wx`, holding our pid). */
async function withTakeoverLock<T>(lockPath: string, log: Logger, fn: () => Promise<T>): Promise<T> {
  const path = `${lockPath}.takeover`;
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new Error(`cannot create ${path}: ${(err as Error).message}`, { cause: err });
      }
    }
    const holder = await readPid(path).catch(() => undefined);
    // Our own pid here is a leftover of an earlier process: acquisitions in this process take turns.
    const live = holder !== undefined && holder !== process.pid && isAlive(holder);
    if (!live && (holder !== undefined || attempt >= 10)) {
      // Its holder crashed in the few milliseconds it holds this file (or left it empty): clear it.
      log.warn({ path, holder: holder ?? null }, 'removing a takeover lock left by a dead process');
      await unlink(path).catch((err: unknown) => log.warn({ err, path }, 'could not remove the dead takeover lock; retrying'));
    } else if (attempt > 100) {
      throw new Error(`could not take over lockfile ${lockPath}: ${path} stays held by process ${holder ?? '?'}`);
    } else {
      await sleep(20);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(path).catch((err: unknown) => log.warn({ err, path }, 'could not remove the takeover lock'));
  }
}

function makeLock(path: string, log: Logger): DirLock {
  let released = false;
  return {
    path,
    async release(): Promise<void> {
      if (released) return;
      released = true;
      heldHere.delete(path);
      try {
        if ((await readPid(path)) === process.pid) await unlink(path);
        else log.warn({ path }, 'lockfile no longer holds our pid; leaving it in place');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          log.warn({ path }, 'lockfile was already removed');
          return;
        }
        throw new Error(`cannot release lockfile ${path}: ${(err as Error).message}`, { cause: err });
      }
    },
  };
}
