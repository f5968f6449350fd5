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
import { nextDelay, type BackoffPolicy } from '@switchyard/protocol';
import { sameBroker, type BrokerTarget } from '../broker-target.ts';
import type {
  Assignment,
  BackoffState,
  ConnectingState,
  IdleState,
  MigrationEffect,
  MigrationEvent,
  MigrationState,
  MigrationStateEvent,
  MoveFields,
  StateBase,
  SwitchingState,
  TimerName,
  TransitionResult,
  VerifyingState,
} from './migration-types.ts';

export * from './migration-types.ts';

// ───────────────────────────── configuration ─────────────────────────────

/** Timing and randomness of the machine. */
export interface MigrationMachineConfig {
  /** Retry delays between attempts. Default `{ baseMs: 1000, maxMs: 60000 }`. */
  backoff: BackoffPolicy;
  /** Uniform random source in [0, 1) for the jitter. Default `Math.random`; inject a fixed one in tests. */
  random: () => number;
  /** How long the new connection may take to CONNACK, ms. Default 10000. */
  connectTimeoutMs: number;
  /** How long subscribe + shadow `get` round trip may take through the new broker, ms. Default 10000. */
  verifyTimeoutMs: number;
  /** How long the runner may take to finish the switch before the machine completes it anyway, ms. Default 10000. */
  switchTimeoutMs: number;
}

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

/** Id of attempt `attempt` of the assignment at `version`. Unique within a process: versions only grow. */
export function attemptIdOf(version: number, attempt: number): string {
  return `v${version}-a${attempt}`;
}

/** The timer owned by a state, if any. */
export function timerOf(state: MigrationState): TimerName | undefined {
  switch (state.name) {
    case 'idle':
      return undefined;
    case 'connecting':
      return 'connect';
    case 'verifying':
      return 'verify';
    case 'switching':
      return 'switch';
    case 'backoff':
      return 'backoff';
    default:
      return assertNever(state);
  }
}

// ───────────────────────────── transition ─────────────────────────────

const IGNORED = (state: MigrationState): TransitionResult => ({ state, effects: [] });

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
      return fromSwitching(state, event, config);
    case 'backoff':
      return fromBackoff(state, event, config);
    default:
      return assertNever(state);
  }
}

function fromIdle(state: IdleState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (event.type) {
    case 'assignment':
      if (event.version <= state.appliedVersion) return IGNORED(state);
      if (sameBroker(event.target, state.current)) return settleOnCurrent(state, state, event, []);
      return startMove(state, state, event, 0, [], event, undefined, config);
    case 'connected':
    case 'connectFailed':
    case 'connectTimeout':
    case 'verified':
    case 'verifyFailed':
    case 'verifyTimeout':
    case 'newConnectionLost':
    case 'switched':
    case 'switchTimeout':
    case 'backoffElapsed':
    case 'oldConnectionLost': // reconnecting `current` is the connection manager's job, not a migration
    case 'abort':
      return IGNORED(state);
    default:
      return assertNever(event);
  }
}

function fromConnecting(state: ConnectingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (event.type) {
    case 'assignment':
      return onAssignmentWhileMoving(state, event, config);
    case 'connected': {
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      const next: VerifyingState = { ...state, name: 'verifying' };
      return done(state, next, event, [
        { type: 'cancelTimer', name: 'connect' },
        { type: 'subscribe', via: 'new', attemptId: state.attemptId },
        { type: 'sendShadowGet', via: 'new', attemptId: state.attemptId },
        { type: 'startTimer', name: 'verify', ms: config.verifyTimeoutMs, attemptId: state.attemptId },
      ]);
    }
    case 'connectFailed':
    case 'newConnectionLost':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return failAttempt(state, event, event.reason, config);
    case 'connectTimeout':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return failAttempt(state, event, `no CONNACK from ${state.target.url} within ${config.connectTimeoutMs} ms`, config);
    case 'abort':
      return abortMove(state, event);
    case 'verified':
    case 'verifyFailed':
    case 'verifyTimeout':
    case 'switched':
    case 'switchTimeout':
    case 'backoffElapsed':
    case 'oldConnectionLost': // keep going: the new broker is now the only way out
      return IGNORED(state);
    default:
      return assertNever(event);
  }
}

function fromVerifying(state: VerifyingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (event.type) {
    case 'assignment':
      return onAssignmentWhileMoving(state, event, config);
    case 'verified': {
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      const next: SwitchingState = { ...state, name: 'switching' };
      return done(state, next, event, [
        { type: 'cancelTimer', name: 'verify' },
        // The switch point: from here the move is committed (make before break).
        { type: 'switchPublishing', attemptId: state.attemptId, to: state.target },
        {
          type: 'report',
          status: 'connected',
          broker: state.target,
          previousBrokerId: state.current.brokerId,
          migratedAt: event.at,
          assignmentVersion: state.assignmentVersion,
        },
        { type: 'startTimer', name: 'switch', ms: config.switchTimeoutMs, attemptId: state.attemptId },
      ]);
    }
    case 'verifyFailed':
    case 'newConnectionLost':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return failAttempt(state, event, event.reason, config);
    case 'verifyTimeout':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return failAttempt(
        state,
        event,
        `no shadow get answer through ${state.target.url} within ${config.verifyTimeoutMs} ms`,
        config,
      );
    case 'abort':
      return abortMove(state, event);
    case 'connected':
    case 'connectFailed':
    case 'connectTimeout':
    case 'switched':
    case 'switchTimeout':
    case 'backoffElapsed':
    case 'oldConnectionLost':
      return IGNORED(state);
    default:
      return assertNever(event);
  }
}

function fromSwitching(state: SwitchingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (event.type) {
    case 'assignment': {
      // Committed: hold a newer assignment until the switch completes, then apply it from idle.
      const newest = Math.max(state.appliedVersion, state.assignmentVersion, state.queued?.version ?? -1);
      if (event.version <= newest) return IGNORED(state);
      const queued: Assignment = { target: event.target, version: event.version, source: event.source };
      return done(state, { ...state, queued }, event, [], `assignment v${event.version} held until the switch completes`);
    }
    case 'switched':
    case 'switchTimeout':
    case 'newConnectionLost':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return completeMove(state, event, config);
    case 'abort':
      return completeMove(state, event, config);
    case 'connected':
    case 'connectFailed':
    case 'connectTimeout':
    case 'verified':
    case 'verifyFailed':
    case 'verifyTimeout':
    case 'backoffElapsed':
    case 'oldConnectionLost': // publishing is on the new connection already; closing old is a no-op then
      return IGNORED(state);
    default:
      return assertNever(event);
  }
}

function fromBackoff(state: BackoffState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  switch (event.type) {
    case 'assignment':
      return onAssignmentWhileMoving(state, event, config);
    case 'backoffElapsed':
      if (event.attemptId !== state.attemptId) return IGNORED(state);
      return startMove(
        state,
        baseOf(state),
        moveAssignment(state),
        state.attempt + 1,
        [{ type: 'cancelTimer', name: 'backoff' }],
        event,
        undefined,
        config,
      );
    case 'oldConnectionLost':
      // The old broker is gone: waiting out the backoff helps nobody, the target is the only way out.
      return startMove(
        state,
        baseOf(state),
        moveAssignment(state),
        state.attempt + 1,
        [{ type: 'cancelTimer', name: 'backoff' }],
        event,
        event.reason,
        config,
      );
    case 'abort':
      return abortMove(state, event);
    case 'connected':
    case 'connectFailed':
    case 'connectTimeout':
    case 'verified':
    case 'verifyFailed':
    case 'verifyTimeout':
    case 'newConnectionLost':
    case 'switched':
    case 'switchTimeout':
      return IGNORED(state);
    default:
      return assertNever(event);
  }
}

// ───────────────────────────── helpers ─────────────────────────────

type MovingState = ConnectingState | VerifyingState | BackoffState;
type AssignmentEvent = Extract<MigrationEvent, { type: 'assignment' }>;

function baseOf(state: MigrationState): StateBase {
  return { current: state.current, appliedVersion: state.appliedVersion };
}

function moveAssignment(state: MoveFields): Assignment {
  return { target: state.target, version: state.assignmentVersion, source: state.source };
}

/** Effects that end the attempt in progress before the switch: cancel its timer, close the new connection. */
function teardown(state: MovingState, reason: string): MigrationEffect[] {
  const effects: MigrationEffect[] = [{ type: 'cancelTimer', name: timerOf(state) ?? 'backoff' }];
  // In backoff the new connection is already closed.
  if (state.name !== 'backoff') effects.push({ type: 'closeConnection', which: 'new', attemptId: state.attemptId, reason });
  return effects;
}

function onAssignmentWhileMoving(state: MovingState, event: AssignmentEvent, config: MigrationMachineConfig): TransitionResult {
  // Older than or equal to the one in progress (or already applied): drop.
  if (event.version <= Math.max(state.appliedVersion, state.assignmentVersion)) return IGNORED(state);
  if (sameBroker(event.target, state.target)) {
    // Same move, newer version: adopt it without restarting (or the version bump of our own reports would loop).
    const next = { ...state, assignmentVersion: event.version, source: event.source };
    return done(state, next, event, [
      { type: 'persist', broker: state.current, appliedVersion: state.appliedVersion, pending: { target: state.target, version: event.version } },
    ]);
  }
  const reason = sameBroker(event.target, state.current)
    ? `assignment v${event.version} keeps the device on broker ${state.current.brokerId}`
    : `preempted by assignment v${event.version} to broker ${event.target.brokerId}`;
  const cleanup = teardown(state, reason);
  if (sameBroker(event.target, state.current)) return settleOnCurrent(state, baseOf(state), event, cleanup, reason);
  return startMove(state, baseOf(state), event, 0, cleanup, event, reason, config);
}

/** An assignment for the broker the device is on: no move; record it and report `connected`. */
function settleOnCurrent(
  from: MigrationState,
  base: StateBase,
  event: AssignmentEvent,
  before: MigrationEffect[],
  reason?: string,
): TransitionResult {
  const next: IdleState = { name: 'idle', current: base.current, appliedVersion: event.version };
  return done(
    from,
    next,
    event,
    [
      ...before,
      { type: 'persist', broker: base.current, appliedVersion: event.version },
      { type: 'report', status: 'connected', broker: base.current, assignmentVersion: event.version },
    ],
    reason,
  );
}

/**
 * Starts attempt `attempt` of `assignment` from `base`: persist the pending move (first attempt only), report
 * `migrating`, open the new connection, start the connect timer.
 */
function startMove(
  from: MigrationState,
  base: StateBase,
  assignment: Assignment,
  attempt: number,
  before: MigrationEffect[],
  cause: MigrationEvent,
  reason: string | undefined,
  config: MigrationMachineConfig,
): TransitionResult {
  const attemptId = attemptIdOf(assignment.version, attempt);
  const next: ConnectingState = {
    name: 'connecting',
    current: base.current,
    appliedVersion: base.appliedVersion,
    target: assignment.target,
    assignmentVersion: assignment.version,
    source: assignment.source,
    attempt,
    attemptId,
  };
  const effects: MigrationEffect[] = [...before];
  if (attempt === 0) {
    effects.push({
      type: 'persist',
      broker: base.current,
      appliedVersion: base.appliedVersion,
      pending: { target: assignment.target, version: assignment.version },
    });
  }
  effects.push(
    {
      type: 'report',
      status: 'migrating',
      broker: base.current,
      targetBrokerId: assignment.target.brokerId,
      assignmentVersion: assignment.version,
      attempt,
    },
    { type: 'openConnection', attemptId, target: assignment.target },
    { type: 'startTimer', name: 'connect', ms: config.connectTimeoutMs, attemptId },
  );
  return done(from, next, cause, effects, reason);
}

/** A failure before the switch: close the new connection, stay on the old, report `error`, back off. */
function failAttempt(
  state: ConnectingState | VerifyingState,
  event: MigrationEvent,
  reason: string,
  config: MigrationMachineConfig,
): TransitionResult {
  const delay = nextDelay(state.attempt, config.backoff, config.random);
  const next: BackoffState = { ...state, name: 'backoff', until: event.at + delay, lastError: reason };
  return done(state, next, event, [
    ...teardown(state, reason),
    {
      type: 'report',
      status: 'error',
      broker: state.current,
      targetBrokerId: state.target.brokerId,
      error: reason,
      assignmentVersion: state.assignmentVersion,
      attempt: state.attempt,
      retryInMs: delay,
    },
    { type: 'startTimer', name: 'backoff', ms: delay, attemptId: state.attemptId },
  ], reason);
}

/** Cancels a move before the switch; stays on current. The persisted `pending` stays (boot ignores it). */
function abortMove(state: MovingState, event: Extract<MigrationEvent, { type: 'abort' }>): TransitionResult {
  const next: IdleState = { name: 'idle', ...baseOf(state) };
  return done(state, next, event, teardown(state, event.reason), event.reason);
}

/** The switch is done (or must be considered done): persist the new broker, close the old connection. */
function completeMove(state: SwitchingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
  const next: IdleState = { name: 'idle', current: state.target, appliedVersion: state.assignmentVersion };
  const reason =
    event.type === 'switchTimeout'
      ? `switch not confirmed within ${config.switchTimeoutMs} ms; committed anyway`
      : event.type === 'newConnectionLost' || event.type === 'abort'
        ? event.reason
        : undefined;
  const result = done(state, next, event, [
    { type: 'cancelTimer', name: 'switch' },
    // Persist before closing the old connection: a crash in between boots on the new broker.
    { type: 'persist', broker: state.target, appliedVersion: state.assignmentVersion },
    { type: 'closeConnection', which: 'old', attemptId: state.attemptId, reason: `moved to broker ${state.target.brokerId}` },
  ], reason);
  if (!state.queued || event.type === 'abort') return result;
  const then = transition(next, { type: 'assignment', ...state.queued, at: event.at }, config);
  return { state: then.state, effects: [...result.effects, ...then.effects] };
}

/** Finishes a transition: appends the `emit` effect. */
function done(
  from: MigrationState,
  to: MigrationState,
  cause: MigrationEvent,
  effects: MigrationEffect[],
  reason?: string,
): TransitionResult {
  const out = [...effects];
  const event: MigrationStateEvent = {
    type: 'migration:state',
    from: from.name,
    to: to.name,
    cause: cause.type,
    brokerId: to.current.brokerId,
    version: to.name === 'idle' ? to.appliedVersion : to.assignmentVersion,
    at: cause.at,
  };
  if (reason !== undefined) event.reason = reason;
  if (to.name !== 'idle') {
    event.attemptId = to.attemptId;
    event.targetBrokerId = to.target.brokerId;
  } else if (from.name !== 'idle') {
    event.attemptId = from.attemptId;
  }
  out.push({ type: 'emit', event });
  return { state: to, effects: out };
}

function assertNever(x: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(x)}`);
}
