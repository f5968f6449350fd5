/**
 * A cross-process lock on a data directory: `<dir>/switchyard.lock`, created exclusively (`wx`), holding the
 * owner's pid. PGlite has no lock of its own, and two processes writing one PGlite directory corrupt it.
 *
 * A lock whose pid is no longer alive (a crash, a kill -9) is stale and taken over, with a log line.
 * Limits: the pid check only means something on one host (not a directory shared between machines), and a
 * dead owner's pid reused by an unrelated live process keeps the lock held until that process exits or the
 * file is removed by hand.
 */
import { link, mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
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

  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const fh = await open(path, 'wx');
      try {
        await fh.writeFile(`${process.pid}\n`);
        await fh.sync();
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

    // Stale. Move it aside atomically (only one contender can move a given file), then check that what we
    // moved is the stale lock we judged and not a fresh one another contender created in between.
    const aside = `${path}.stale.${process.pid}.${attempt}`;
    try {
      await rename(path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new Error(`cannot take over stale lockfile ${path}: ${(err as Error).message}`, { cause: err });
    }
    const movedPid = await readPid(aside).catch(() => undefined);
    if (movedPid !== pid) {
      // We moved someone's fresh lock: put it back (unless yet another lock appeared) and start over.
      await link(aside, path).catch((err: unknown) => log.warn({ err, path }, 'could not restore a lockfile moved by mistake'));
      await unlink(aside).catch((err: unknown) => log.warn({ err, aside }, 'could not remove a moved lockfile'));
      continue;
    }
    await unlink(aside).catch((err: unknown) => log.warn({ err, aside }, 'could not remove the stale lockfile'));
    log.warn({ dir, stalePid: pid ?? null }, `taking over stale lock of data directory ${dir} (process ${pid ?? '?'} is gone)`);
  }
  throw new Error(`could not acquire lockfile ${path}: too much contention`);
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
