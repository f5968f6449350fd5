/**
 * The broker-migration state machine: make before break (DESIGN §5), as one state union and one pure
 * `transition(state, event) → { state, effects }`. It owns no socket, no timer and no clock: events carry the
 * time (`at`, ms since the epoch) and the effect runner executes the effects in order, awaiting each.
 *
 * Every state holds `current` — the broker the device is on: its connection carries the device's publishes in
 * every state but `switching`, where publishing has already moved to `target` and `current` is the connection
 * about to be closed — and `appliedVersion`, the newest assignment version already acted on. No state is ever
 * without a current broker, and the old connection is only closed after publishing has switched to the new one.
 * Leaving a state always cancels its timer (`cancelTimer`), even one that just fired, so the runner never
 * needs to track which timers are live beyond name → handle.
 *
 * States:
 *
 * - `idle { current, appliedVersion }` — on `current`, no move in progress. Owns no timer.
 *   Entered: at boot ({@link initialMigrationState}, from the persisted broker; a persisted `pending` target is
 *   ignored because the shadow `get` after connecting re-delivers the assignment), when a move completes
 *   (`switching` → `switched`/`switchTimeout`/`newConnectionLost`), when an assignment names the broker the
 *   device is already on (a move in progress is cancelled), and on `abort`.
 *   Left: on an `assignment` newer than `appliedVersion` for another broker → `connecting`.
 *
 * - `connecting { current, target, assignmentVersion, attempt, attemptId }` — the new connection is being
 *   opened (`openConnection`); the old one stays up and keeps publishing. Owns timer `connect`.
 *   Entered: from `idle` on a new assignment, from `backoff` on `backoffElapsed` (or `oldConnectionLost`, to
 *   retry at once), from any moving state when a newer assignment preempts the move.
 *   Left: `connected` → `verifying`; `connectFailed`/`connectTimeout`/`newConnectionLost` → `backoff`;
 *   newer assignment → `connecting` (preempted) or `idle` (back to current); `abort` → `idle`.
 *
 * - `verifying { … }` — the new connection is up; the runner subscribes on it (`subscribe`, awaiting SUBACK)
 *   and sends a shadow `get` through it (`sendShadowGet`, clientToken = attemptId). Left when the answer
 *   (`get/accepted` or `get/rejected`) arrives through the new broker — the round trip proves the broker
 *   delivers both ways, which a PUBACK does not (DESIGN §2). Owns timer `verify`.
 *   Left: `verified` → `switching`; `verifyFailed`/`verifyTimeout`/`newConnectionLost` → `backoff`;
 *   newer assignment → `connecting`/`idle`; `abort` → `idle`.
 *
 * - `switching { …, queued? }` — publishing has moved to the new connection (`switchPublishing`: the publish
 *   queue re-sends whatever the old connection had not acknowledged, then the `connected` report follows).
 *   From here the move is committed: nothing rolls back to the old broker. Owns timer `switch`.
 *   Left: `switched` (the runner finished the switch), `switchTimeout`, `newConnectionLost` or `abort` →
 *   `idle` on the target (persist, then close the old connection). A newer assignment arriving meanwhile is
 *   held in `queued` and applied right after, from `idle`.
 *
 * - `backoff { …, until, lastError }` — the last attempt failed before the switch: the new connection was
 *   closed, `error` reported, the device is still on `current`. Owns timer `backoff`
 *   (`nextDelay(attempt, policy, random)`: exponential, capped, full jitter). `until` = when it fires.
 *   Left: `backoffElapsed` → `connecting` with `attempt + 1`; `oldConnectionLost` → `connecting` at once (the
 *   old broker is gone, waiting helps nobody); newer assignment → `connecting` (attempt 0) or `idle`;
 *   `abort` → `idle`.
 *
 * Assignments (from any channel: shadow, command, job, poll) are deduplicated by version: one whose version is
 * ≤ `appliedVersion`, or ≤ the version in progress, is dropped — so an assignment delivered twice, or by two
 * channels, moves the device once. A newer one for the same target as the move in progress only adopts the
 * new version (shadow versions also grow on unrelated shadow updates; restarting the move would loop).
 *
 * Connection and timer events carry the `attemptId` of the attempt they belong to; an event from any other
 * attempt (a late answer from a preempted connection, a timer that fired while being cancelled) is ignored.
 * Ignored events return the same state object and no effects. Every real transition ends with one `emit`
 * effect (the `migration:state` event: from, to, cause), which the runner publishes and logs at debug.
 */
import type { BrokerTarget } from '../broker-target.ts';
import type {
  IdleState,
  MigrationEvent,
  MigrationMachineConfig,
  MigrationState,
  TransitionResult,
} from './migration-types.ts';
import { assertNever } from './migration-moves.ts';
import { fromBackoff, fromConnecting, fromIdle, fromSwitching, fromVerifying } from './migration-states.ts';

// The machine is split in three files, imported in one direction only (machine → states → moves → types):
// this one (the public entry point, the configuration and the `transition` dispatch), `migration-states.ts`
// (one handler per state) and `migration-moves.ts` (the steps the handlers share).
export * from './migration-types.ts';
export { attemptIdOf, timerOf } from './migration-moves.ts';

// ───────────────────────────── configuration ─────────────────────────────

/** Defaults of {@link MigrationMachineConfig}. */
export const DEFAULT_MIGRATION_CONFIG: MigrationMachineConfig = {
  backoff: { baseMs: 1000, maxMs: 60_000 },
  random: Math.random,
  connectTimeoutMs: 10_000,
  verifyTimeoutMs: 10_000,
  switchTimeoutMs: 10_000,
};

/** A migration machine bound to its configuration. */
export interface MigrationMachine {
  /** The configuration in use (defaults filled in). */
  readonly config: MigrationMachineConfig;
  /** The state at boot. */
  initialState(persisted: { broker: BrokerTarget; appliedVersion: number }): MigrationState;
  /** The one transition function: pure given a deterministic `config.random`. */
  transition(state: MigrationState, event: MigrationEvent): TransitionResult;
}

/**
 * Creates the machine. The runner holds the state: `({state, effects} = machine.transition(state, event))`,
 * then executes `effects` in order.
 */
export function createMigrationMachine(config: Partial<MigrationMachineConfig> = {}): MigrationMachine {
  const full: MigrationMachineConfig = { ...DEFAULT_MIGRATION_CONFIG, ...config };
  return {
    config: full,
    initialState: initialMigrationState,
    transition: (state, event) => transition(state, event, full),
  };
}

/**
 * The state at boot: idle on the persisted broker. A persisted `pending` move is deliberately not resumed —
 * the shadow `get` after connecting re-delivers the assignment if it still stands, and an assignment that was
 * superseded while the device was down must not be acted on.
 */
export function initialMigrationState(persisted: { broker: BrokerTarget; appliedVersion: number }): IdleState {
  return { name: 'idle', current: persisted.broker, appliedVersion: persisted.appliedVersion };
}

// ───────────────────────────── transition ─────────────────────────────

/**
 * The transition function. Pure: the same state, event and config (with a deterministic `random`) give the
 * same result; nothing is mutated.
 */
export function transition(state: MigrationState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (state.name) {
    case 'idle':
      return fromIdle(state, event, config);
    case 'connecting':
      return fromConnecting(state, event, config);
    case 'verifying':
      return fromVerifying(state, event, config);
    case 'switching':
      return fromSwitching(state, event, config, transition);
    case 'backoff':
      return fromBackoff(state, event, config);
    default:
      return assertNever(state);
  }
}
