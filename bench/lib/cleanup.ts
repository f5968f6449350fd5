/**
 * The bench's cleanup stack. Every server, temp dir, proxy and child a bench starts is registered with `track`;
 * `cleanupAll` undoes what is left, last first — at the end, on error, and on Ctrl-C (`stopOnSignals`). A run (or a
 * target) that stops its own parts before the next starts keeps them in a {@link RunStops}.
 */
import { log } from './cli.ts';

const cleanups: Array<() => Promise<unknown>> = [];
let wasInterrupted = false;

/** Runs every registered undo step, last first; a failing step is reported and the rest still run. */
export async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup step failed (continuing): ${(err as Error).message}\n`);
    }
  }
}

/** On SIGINT/SIGTERM: says `stopping <what>…`, cleans up and exits 130 (a second signal exits at once). */
export function stopOnSignals(what: string): void {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (wasInterrupted) process.exit(130); // second Ctrl-C: the helpers' exit hooks still kill the servers
      wasInterrupted = true;
      process.stderr.write(`\n${signal}: stopping ${what}…\n`);
      void cleanupAll().finally(() => process.exit(130));
    });
  }
}

/** True once a signal started the cleanup: loops stop at their next step. */
export function interrupted(): boolean {
  return wasInterrupted;
}

/** Registers `undo` to run at cleanup; returns a function that runs it now (once) and unregisters it. */
export function track(undo: () => Promise<unknown>): () => Promise<void> {
  let done = false;
  const once = async (): Promise<void> => {
    if (done) return;
    done = true;
    const i = cleanups.indexOf(once);
    if (i >= 0) cleanups.splice(i, 1);
    await undo();
  };
  cleanups.push(once);
  return once;
}

/** What one run started and stops itself (last first), each step also on the cleanup stack in case it never does. */
export interface RunStops {
  /** `track(undo)`, kept for `stopAll`; returns the stop function. */
  track(undo: () => Promise<unknown>): () => Promise<void>;
  /** Keeps an already tracked stop function (e.g. an agent child's) for `stopAll`. */
  add(stop: () => Promise<void>): void;
  /** Runs the kept stops, last first; a failing one is logged (`stop: …`) and the rest still run. */
  stopAll(): Promise<void>;
}

export function runStops(): RunStops {
  const stops: Array<() => Promise<void>> = [];
  return {
    track(undo) {
      const stop = track(undo);
      stops.push(stop);
      return stop;
    },
    add(stop) {
      stops.push(stop);
    },
    async stopAll() {
      while (stops.length > 0) await stops.pop()!().catch((err: Error) => log(`stop: ${err.message}`));
    },
  };
}
