/**
 * The `change-broker` job handler: its document (`{brokerId, broker, protocol, host, port, version}`, the
 * server's `desired.mqtt` plus the shadow version) is fed to the migration machine as an assignment from
 * source `job` — deduplicated by version with the other channels, so a move told twice happens once.
 *
 * Outcome:
 * - SUCCEEDED when the machine is idle on the target broker with the job's version (or a newer one for the same
 *   broker) applied and the agent's current connection is to that broker;
 * - FAILED `preempted` when a newer assignment for another broker takes over (or was applied already);
 * - FAILED for good after `maxAttempts` failed attempts of this move in a row (default 5), with the last error:
 *   the job reports, it does not give up the move — the machine keeps retrying with backoff while
 *   `desired.mqtt` says so, and the migration row ends by the device's report or its deadline. While retrying
 *   below that bound the job stays IN_PROGRESS with `statusDetails {lastError, attempt}` after each failure;
 * - REJECTED when the document is not a broker (not retryable).
 */
import { brokerTargetFromDesired, sameBroker, type BrokerTarget } from '../broker-target.ts';
import type { MigrationState } from '../migration/migration-types.ts';
import type { JobHandler, JobOutcome } from './job-engine.ts';

/** What the handler needs of the agent. */
export interface ChangeBrokerDeps {
  /** Feeds an assignment (source `job`) to the migration runner. */
  assign(a: { target: BrokerTarget; version: number }): void;
  /** The migration machine's state now. */
  state(): MigrationState | null;
  /** The broker of the current connection, or null while disconnected. */
  connectedBrokerId(): number | null;
  /** Calls `cb` on every migration transition and every (re)connect; returns the unsubscribe function. */
  onChange(cb: () => void): () => void;
  /** Failed attempts of one move before the job is FAILED (the move itself goes on). Default 5. */
  maxAttempts?: number;
}

export function changeBrokerHandler(deps: ChangeBrokerDeps): JobHandler {
  const maxAttempts = deps.maxAttempts ?? 5;
  return async (ctx) => {
    const doc = ctx.document;
    const parsed = brokerTargetFromDesired(doc, 'jobDocument');
    const version = doc.version;
    if (!parsed.ok || typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
      const errors = parsed.ok ? ['jobDocument.version must be a non-negative integer'] : parsed.errors;
      return { status: 'REJECTED', statusDetails: { reason: `not a broker assignment: ${errors.join('; ')}`.slice(0, 1024) } };
    }
    const target = parsed.value;
    deps.assign({ target, version });

    return new Promise<JobOutcome>((resolve, reject) => {
      let lastReported = '';
      let off = (): void => undefined;
      const done = (o: JobOutcome | Error): void => {
        off();
        ctx.signal.removeEventListener('abort', onAbort);
        if (o instanceof Error) reject(o);
        else resolve(o);
      };
      const onAbort = (): void => done(new Error('agent stopping'));
      const check = (): void => {
        const s = deps.state();
        if (!s) return;
        const onTarget = sameBroker(s.current, target) || s.current.brokerId === target.brokerId;
        if (s.name === 'idle') {
          if (onTarget && s.appliedVersion >= version) {
            if (deps.connectedBrokerId() === target.brokerId) done({ status: 'SUCCEEDED', statusDetails: { brokerId: String(target.brokerId), version: String(s.appliedVersion) } });
            return; // on the target, reconnecting: wait for the connection
          }
          if (s.appliedVersion >= version) {
            done({ status: 'FAILED', statusDetails: { reason: 'preempted', detail: `a newer assignment (version ${s.appliedVersion}) keeps the device on broker ${s.current.brokerId}` } });
          }
          return;
        }
        // A move is in progress.
        if (s.assignmentVersion >= version && s.target.brokerId !== target.brokerId) {
          done({ status: 'FAILED', statusDetails: { reason: 'preempted', detail: `a newer assignment (version ${s.assignmentVersion}) moves the device to broker ${s.target.brokerId}` } });
          return;
        }
        if (s.name === 'backoff' && s.target.brokerId === target.brokerId) {
          if (s.attempt + 1 >= maxAttempts) {
            done({ status: 'FAILED', statusDetails: { reason: 'move failed', lastError: s.lastError.slice(0, 1024) || 'unknown', attempts: String(s.attempt + 1) } });
            return;
          }
          const key = `${s.attemptId}`;
          if (key !== lastReported) {
            lastReported = key;
            void ctx.progress({ step: 'retrying', lastError: s.lastError.slice(0, 1024) || 'unknown', attempt: String(s.attempt + 1) });
          }
        }
      };
      off = deps.onChange(check);
      ctx.signal.addEventListener('abort', onAbort, { once: true });
      check();
    });
  };
}
