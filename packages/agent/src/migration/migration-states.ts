/**
 * The per-state handlers of the broker-migration machine: one function per state, each an exhaustive `switch`
 * over the events (states, timers and transitions are described in `migration-machine.ts`, which dispatches
 * here). The steps they share are in `migration-moves.ts`.
 */
import { sameBroker } from '../broker-target.ts';
import type {
  Assignment,
  BackoffState,
  ConnectingState,
  IdleState,
  MigrationEvent,
  MigrationMachineConfig,
  SwitchingState,
  TransitionResult,
  VerifyingState,
} from './migration-types.ts';
import {
  abortMove,
  assertNever,
  baseOf,
  completeMove,
  done,
  failAttempt,
  IGNORED,
  moveAssignment,
  onAssignmentWhileMoving,
  settleOnCurrent,
  startMove,
  type Transition,
} from './migration-moves.ts';

export function fromIdle(state: IdleState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
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

export function fromConnecting(state: ConnectingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
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

export function fromVerifying(state: VerifyingState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
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

/**
 * `transition` is the machine's own dispatch, passed in by it: completing the switch applies a queued
 * assignment through it (see {@link completeMove}).
 */
export function fromSwitching(
  state: SwitchingState,
  event: MigrationEvent,
  config: MigrationMachineConfig,
  transition: Transition,
): TransitionResult {
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
      return completeMove(state, event, config, transition);
    case 'abort':
      return completeMove(state, event, config, transition);
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

export function fromBackoff(state: BackoffState, event: MigrationEvent, config: MigrationMachineConfig): TransitionResult {
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
