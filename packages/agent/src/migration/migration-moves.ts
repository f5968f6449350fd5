/**
 * The building blocks of the broker-migration transitions (`migration-machine.ts` describes the states): the
 * steps that start, fail, settle, abort and complete a move, the `emit` that ends every transition, and the
 * small pure helpers the state handlers (`migration-states.ts`) share. Imports nothing from the machine.
 */
import { nextDelay } from '@switchyard/protocol';
import { sameBroker } from '../broker-target.ts';
import type {
  Assignment,
  BackoffState,
  ConnectingState,
  IdleState,
  MigrationEffect,
  MigrationEvent,
  MigrationMachineConfig,
  MigrationState,
  MigrationStateEvent,
  MoveFields,
  StateBase,
  SwitchingState,
  TimerName,
  TransitionResult,
  VerifyingState,
} from './migration-types.ts';

/** The signature of the machine's `transition` (see `migration-machine.ts`), for steps that continue with it. */
export type Transition = (state: MigrationState, event: MigrationEvent, config: MigrationMachineConfig) => TransitionResult;

/** An ignored event: the same state object, no effects. */
export const IGNORED = (state: MigrationState): TransitionResult => ({ state, effects: [] });

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

// ───────────────────────────── helpers ─────────────────────────────

export type MovingState = ConnectingState | VerifyingState | BackoffState;
export type AssignmentEvent = Extract<MigrationEvent, { type: 'assignment' }>;

export function baseOf(state: MigrationState): StateBase {
  return { current: state.current, appliedVersion: state.appliedVersion };
}

export function moveAssignment(state: MoveFields): Assignment {
  return { target: state.target, version: state.assignmentVersion, source: state.source };
}

/** Effects that end the attempt in progress before the switch: cancel its timer, close the new connection. */
function teardown(state: MovingState, reason: string): MigrationEffect[] {
  const effects: MigrationEffect[] = [{ type: 'cancelTimer', name: timerOf(state) ?? 'backoff' }];
  // In backoff the new connection is already closed.
  if (state.name !== 'backoff') effects.push({ type: 'closeConnection', which: 'new', attemptId: state.attemptId, reason });
  return effects;
}

export function onAssignmentWhileMoving(state: MovingState, event: AssignmentEvent, config: MigrationMachineConfig): TransitionResult {
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
export function settleOnCurrent(
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
export function startMove(
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
export function failAttempt(
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
export function abortMove(state: MovingState, event: Extract<MigrationEvent, { type: 'abort' }>): TransitionResult {
  const next: IdleState = { name: 'idle', ...baseOf(state) };
  return done(state, next, event, teardown(state, event.reason), event.reason);
}

/**
 * The switch is done (or must be considered done): persist the new broker, close the old connection.
 * A queued assignment is then applied from idle through `transition` — the machine's own dispatch, passed in
 * by the caller because it lives in `migration-machine.ts`, which imports this file (no import cycle).
 */
export function completeMove(
  state: SwitchingState,
  event: MigrationEvent,
  config: MigrationMachineConfig,
  transition: Transition,
): TransitionResult {
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
export function done(
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

export function assertNever(x: never): never {
  throw new Error(`unhandled case: ${JSON.stringify(x)}`);
}
