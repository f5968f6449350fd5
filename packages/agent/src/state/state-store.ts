/**
 * The agent's persisted state: which broker to start from, the newest assignment version applied, and the
 * move in progress, as JSON in `<stateDir>/agent-state.json`.
 *
 * Why atomic: the earlier implementation never persisted the new broker, so a reboot went back to the old one
 * (DESIGN §8); a torn write would be worse — a device that cannot parse its own state. So a save writes a
 * temporary file in the same directory, fsyncs it, renames it over the real file (atomic on POSIX within one
 * file system) and fsyncs the directory so the rename itself survives a power cut. A reader therefore sees the
 * old file or the new one, never a mix; a temporary file left by a crash is never read.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isValidDeviceUuid } from '@switchyard/protocol';
import { parseBrokerTarget, type BrokerTarget } from '../broker-target.ts';

/** File name of the state inside the state directory. */
export const STATE_FILE_NAME = 'agent-state.json';

/** Format number written into the file (`format`); a file with another one is refused, not guessed at. */
export const STATE_FILE_FORMAT = 1;

/** What the agent persists. */
export interface AgentState {
  /** The device this state belongs to. */
  deviceUuid: string;
  /** The broker to connect to at boot (the one publishing last switched to). */
  broker: BrokerTarget;
  /** Newest assignment version applied (0 = none yet); a non-negative safe integer. */
  appliedVersion: number;
  /** A move that was in progress when saved; informational at boot (the shadow `get` re-delivers it). */
  pending?: { target: BrokerTarget; version: number };
}

/** Why a state file could not be used. */
export type StateFileErrorCode = 'STATE_FILE_UNREADABLE' | 'STATE_FILE_CORRUPT' | 'STATE_FILE_INVALID';

/** A state file that exists but cannot be used; the caller decides (start from the config API, or stop). */
export class StateFileError extends Error {
  override readonly name = 'StateFileError';
  /**
   * @param code UNREADABLE (I/O error other than missing), CORRUPT (not JSON), INVALID (JSON of the wrong shape)
   * @param path the file
   * @param reasons every problem found
   */
  constructor(
    readonly code: StateFileErrorCode,
    readonly path: string,
    readonly reasons: string[],
    options?: { cause?: unknown },
  ) {
    super(`${path}: ${code === 'STATE_FILE_INVALID' ? 'invalid agent state' : code === 'STATE_FILE_CORRUPT' ? 'corrupt agent state' : 'cannot read agent state'}: ${reasons.join('; ')}`, options);
  }
}

/** Reads and writes the agent state file. */
export interface StateStore {
  /** Absolute or relative path of the state file. */
  readonly path: string;
  /**
   * The saved state, or `null` when there is none yet.
   * @throws StateFileError when the file exists but cannot be read, is not JSON, or fails validation
   */
  load(): Promise<AgentState | null>;
  /**
   * Saves atomically (temp file + fsync + rename + directory fsync); creates the directory if needed.
   * Saves through one store are applied in call order; the returned promise settles when this one is durable.
   * @throws TypeError when `state` itself is invalid (nothing is written)
   */
  save(state: AgentState): Promise<void>;
}

/** Options of {@link createStateStore}. */
export interface StateStoreOptions {
  /** Directory holding the state file (created with mode 0700 on first save). */
  stateDir: string;
  /** Logger for the rare non-fatal trouble (a directory fsync not supported, a temp file left behind). */
  log?: Logger;
}

/** Creates a store for `<stateDir>/agent-state.json`. */
export function createStateStore(options: StateStoreOptions): StateStore {
  const path = join(options.stateDir, STATE_FILE_NAME);
  let chain: Promise<void> = Promise.resolve();

  async function writeAtomically(state: AgentState): Promise<void> {
    await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
    // A unique temp name per save: concurrent savers (even in two processes) never write the same file.
    const tmp = join(options.stateDir, `.${STATE_FILE_NAME}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    const body = `${JSON.stringify(toFile(state), null, 2)}\n`;
    let renamed = false;
    try {
      const fh = await open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(body, 'utf8');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, path);
      renamed = true;
      await syncDirectory(options.stateDir, options.log);
    } finally {
      if (!renamed) {
        await unlink(tmp).catch((err: unknown) => {
          options.log?.warn({ err, tmp }, 'could not remove temporary state file; it is ignored on load');
        });
      }
    }
  }

  return {
    path,
    async load() {
      let text: string;
      try {
        text = await readFile(path, 'utf8');
      } catch (err) {
        if (isErrno(err, 'ENOENT')) return null;
        throw new StateFileError('STATE_FILE_UNREADABLE', path, [errMessage(err)], { cause: err });
      }
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (err) {
        throw new StateFileError('STATE_FILE_CORRUPT', path, [`not valid JSON (${errMessage(err)})`], { cause: err });
      }
      const result = validateStateFile(json);
      if (!result.ok) throw new StateFileError('STATE_FILE_INVALID', path, result.errors);
      return result.value;
    },
    save(state) {
      const checked = validateAgentState(state);
      if (!checked.ok) return Promise.reject(new TypeError(`refusing to save invalid agent state: ${checked.errors.join('; ')}`));
      const next = chain.then(() => writeAtomically(checked.value));
      // Keep the chain alive after a failed save; the caller of that save still gets its rejection.
      chain = next.catch(() => undefined);
      return next;
    },
  };
}

/**
 * Validates an untrusted value as an {@link AgentState} (every field; unknown keys are ignored). Never throws.
 */
export function validateAgentState(value: unknown): { ok: true; value: AgentState } | { ok: false; errors: string[] } {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, errors: ['expected a JSON object'] };
  }
  const o = value as Record<string, unknown>;
  const errors: string[] = [];
  if (!isValidDeviceUuid(o.deviceUuid)) {
    errors.push('deviceUuid: expected 1–128 characters of [A-Za-z0-9:_-]');
  }
  const broker = parseBrokerTarget(o.broker, 'broker');
  if (!broker.ok) errors.push(...broker.errors);
  if (!isVersion(o.appliedVersion)) errors.push(`appliedVersion: expected a non-negative integer, got ${short(o.appliedVersion)}`);
  let pending: AgentState['pending'];
  if (o.pending !== undefined && o.pending !== null) {
    if (typeof o.pending !== 'object' || Array.isArray(o.pending)) {
      errors.push('pending: expected an object {target, version}');
    } else {
      const p = o.pending as Record<string, unknown>;
      const target = parseBrokerTarget(p.target, 'pending.target');
      if (!target.ok) errors.push(...target.errors);
      if (!isVersion(p.version)) errors.push(`pending.version: expected a non-negative integer, got ${short(p.version)}`);
      if (target.ok && isVersion(p.version)) pending = { target: target.value, version: p.version };
    }
  }
  if (errors.length > 0 || !broker.ok) return { ok: false, errors };
  const state: AgentState = { deviceUuid: o.deviceUuid as string, broker: broker.value, appliedVersion: o.appliedVersion as number };
  if (pending) state.pending = pending;
  return { ok: true, value: state };
}

function validateStateFile(json: unknown): { ok: true; value: AgentState } | { ok: false; errors: string[] } {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return { ok: false, errors: ['expected a JSON object'] };
  const format = (json as Record<string, unknown>).format;
  if (format !== STATE_FILE_FORMAT) {
    return { ok: false, errors: [`format: expected ${STATE_FILE_FORMAT}, got ${short(format)}`] };
  }
  return validateAgentState(json);
}

function toFile(state: AgentState): Record<string, unknown> {
  const file: Record<string, unknown> = {
    format: STATE_FILE_FORMAT,
    deviceUuid: state.deviceUuid,
    broker: state.broker,
    appliedVersion: state.appliedVersion,
  };
  if (state.pending) file.pending = state.pending;
  return file;
}

/** fsync a directory so a rename inside it is durable. Some platforms/file systems refuse; that is logged. */
async function syncDirectory(dir: string, log: Logger | undefined): Promise<void> {
  let fh;
  try {
    fh = await open(dir, 'r');
    await fh.sync();
  } catch (err) {
    // EISDIR/EINVAL/EPERM on platforms that cannot fsync a directory (Windows, some FUSE mounts): the rename is
    // still atomic, only its durability across a power cut is weaker.
    if (isErrno(err, 'EISDIR') || isErrno(err, 'EINVAL') || isErrno(err, 'EPERM') || isErrno(err, 'ENOTSUP')) {
      log?.debug({ err, dir }, 'directory fsync not supported; continuing');
      return;
    }
    throw err;
  } finally {
    await fh?.close();
  }
}

function isVersion(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === code;
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function short(v: unknown): string {
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return String(v);
}
