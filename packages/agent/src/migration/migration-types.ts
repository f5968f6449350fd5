/**
 * Types of the broker-migration state machine: its configuration, the state union, the events the runner feeds
 * it and the effects it returns. The states, their timers and their transitions are described in
 * `migration-machine.ts` (which also holds the defaults, `DEFAULT_MIGRATION_CONFIG`).
 */
import type { BackoffPolicy } from '@switchyard/protocol';
import type { BrokerTarget } from '../broker-target.ts';

// ───────────────────────────── configuration ─────────────────────────────

/** Timing and randomness of the machine (defaults: `DEFAULT_MIGRATION_CONFIG` in `migration-machine.ts`). */
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

// ───────────────────────────── states ─────────────────────────────

/** The channel an assignment came through. */
export type AssignmentSource = 'shadow' | 'command' | 'job' | 'poll';

/** An order to be on `target`, at assignment (shadow) `version`. */
export interface Assignment {
  /** The broker to move to. */
  target: BrokerTarget;
  /** The assignment's version (the `device-state` shadow version that set `desired.mqtt`); a non-negative integer. */
  version: number;
  /** Channel it arrived on. */
  source: AssignmentSource;
}

/** Fields every state holds. */
export interface StateBase {
  /** The broker the device is on (in `switching`: the one being left; publishing is on `target`). Never absent. */
  current: BrokerTarget;
  /** Newest assignment version acted on (0 = none yet). Never decreases. */
  appliedVersion: number;
}

/** Fields of every state with a move in progress. */
export interface MoveFields extends StateBase {
  /** Broker being moved to. */
  target: BrokerTarget;
  /** Version of the assignment being carried out (> appliedVersion). */
  assignmentVersion: number;
  /** Channel the assignment came through. */
  source: AssignmentSource;
  /** 0-based attempt number of this assignment. */
  attempt: number;
  /** Id of this attempt: ties connection and timer events to it. `v{version}-a{attempt}`. */
  attemptId: string;
}

/** No move in progress. */
export interface IdleState extends StateBase {
  name: 'idle';
}
/** Opening the new connection. Timer `connect`. */
export interface ConnectingState extends MoveFields {
  name: 'connecting';
}
/** New connection up; subscribing and waiting for the shadow `get` round trip. Timer `verify`. */
export interface VerifyingState extends MoveFields {
  name: 'verifying';
}
/** Publishing switched to the new connection; waiting for the runner to finish. Timer `switch`. */
export interface SwitchingState extends MoveFields {
  name: 'switching';
  /** A newer assignment that arrived during the switch, applied once it completes. */
  queued?: Assignment;
}
/** Waiting before the next attempt. Timer `backoff`. */
export interface BackoffState extends MoveFields {
  name: 'backoff';
  /** When the backoff timer fires, ms since the epoch. */
  until: number;
  /** Why the last attempt failed. */
  lastError: string;
}

/** The one state union of the broker migration. */
export type MigrationState = IdleState | ConnectingState | VerifyingState | SwitchingState | BackoffState;

/** Name of a state. */
export type MigrationStateName = MigrationState['name'];

// ───────────────────────────── events ─────────────────────────────

/** Fields every event carries. */
interface EventBase {
  /** When the event happened, ms since the epoch (the runner stamps it from its clock). */
  at: number;
}
/** Fields of events that belong to one attempt. */
interface AttemptEvent extends EventBase {
  /** The attempt the event belongs to (from the effect that started the connection or timer). */
  attemptId: string;
}

/** Everything the runner feeds the machine. */
export type MigrationEvent =
  /** An assignment arrived on some channel. */
  | ({ type: 'assignment' } & Assignment & EventBase)
  /** The new connection's CONNACK arrived (accepted). */
  | ({ type: 'connected' } & AttemptEvent)
  /** The new connection was refused or could not be opened. */
  | ({ type: 'connectFailed'; reason: string } & AttemptEvent)
  /** Timer `connect` fired. */
  | ({ type: 'connectTimeout' } & AttemptEvent)
  /** The shadow `get` was answered through the new broker. */
  | ({ type: 'verified' } & AttemptEvent)
  /** Subscribing or sending the `get` on the new connection failed. */
  | ({ type: 'verifyFailed'; reason: string } & AttemptEvent)
  /** Timer `verify` fired. */
  | ({ type: 'verifyTimeout' } & AttemptEvent)
  /** The new connection (opened for this attempt) closed or errored after `connected`. */
  | ({ type: 'newConnectionLost'; reason: string } & AttemptEvent)
  /** The runner finished `switchPublishing` and the `connected` report. */
  | ({ type: 'switched' } & AttemptEvent)
  /** Timer `switch` fired. */
  | ({ type: 'switchTimeout' } & AttemptEvent)
  /** Timer `backoff` fired. */
  | ({ type: 'backoffElapsed' } & AttemptEvent)
  /** The connection to `current` dropped (its own reconnects are the connection manager's business). */
  | ({ type: 'oldConnectionLost'; reason: string } & EventBase)
  /** Stop any move in progress (agent shutting down). */
  | ({ type: 'abort'; reason: string } & EventBase);

/** Type of an event. */
export type MigrationEventType = MigrationEvent['type'];

// ───────────────────────────── effects ─────────────────────────────

/** The timers the machine uses; each belongs to one state. */
export type TimerName = 'connect' | 'verify' | 'switch' | 'backoff';

/** The event the runner dispatches when a timer fires (with the timer's attemptId). */
export const TIMER_EVENTS = {
  connect: 'connectTimeout',
  verify: 'verifyTimeout',
  switch: 'switchTimeout',
  backoff: 'backoffElapsed',
} as const satisfies Record<TimerName, MigrationEventType>;

/** The typed `migration:state` event emitted on every transition. */
export interface MigrationStateEvent {
  type: 'migration:state';
  /** State left. */
  from: MigrationStateName;
  /** State entered (may equal `from`, e.g. idle → idle on an assignment for the current broker). */
  to: MigrationStateName;
  /** The machine event that caused it. */
  cause: MigrationEventType;
  /** Why, when the cause carries a reason (a failure, a preemption, an abort). */
  reason?: string;
  /** The attempt concerned, if any. */
  attemptId?: string;
  /** Broker the device publishes through after the transition. */
  brokerId: number;
  /** Broker being moved to, in a moving state. */
  targetBrokerId?: number;
  /** Assignment version in progress or, in idle, applied. */
  version: number;
  /** When, ms since the epoch. */
  at: number;
}

/** Status values of `reported.mqtt.status`. */
export type ReportStatus = 'migrating' | 'connected' | 'error';

/**
 * A report for `reported.mqtt` in the `device-state` shadow, published through the connection that carries
 * publishes at that moment (the old one for `migrating`/`error`, the new one for `connected`).
 */
export interface ReportEffect {
  type: 'report';
  status: ReportStatus;
  /** Broker the device publishes through now (`reported.mqtt.brokerId`/`broker` = `broker.url`). */
  broker: BrokerTarget;
  /** `migrating`/`error`: the broker being moved to. */
  targetBrokerId?: number;
  /** `connected` after a move: the broker left. */
  previousBrokerId?: number;
  /** `error`: why the attempt failed. */
  error?: string;
  /** `connected` after a move: when publishing switched, ms since the epoch. */
  migratedAt?: number;
  /** The assignment version this report answers (lets the server match it to its migration row). */
  assignmentVersion: number;
  /** `migrating`/`error`: 0-based attempt number. */
  attempt?: number;
  /** `error`: ms until the next attempt. */
  retryInMs?: number;
}

/** Plain-data instructions for the effect runner, executed in order (each awaited). */
export type MigrationEffect =
  /** Open a second MQTT connection to `target` (reconnectPeriod 0: the machine decides retries). */
  | { type: 'openConnection'; attemptId: string; target: BrokerTarget }
  /**
   * Close a connection cleanly (DISCONNECT). `new`: the one opened for `attemptId` (a no-op if already gone).
   * `old`: the connection publishing used before `attemptId` switched it — only ever after `switchPublishing`.
   */
  | { type: 'closeConnection'; which: 'new' | 'old'; attemptId: string; reason: string }
  /** Subscribe on the new connection to the device's topics (shadow replies, command, jobs); await SUBACK. */
  | { type: 'subscribe'; via: 'new'; attemptId: string }
  /** Publish a `device-state` shadow `get` on the new connection, clientToken = attemptId. */
  | { type: 'sendShadowGet'; via: 'new'; attemptId: string }
  /** (Re)start timer `name`; when it fires dispatch `TIMER_EVENTS[name]` with this attemptId. */
  | { type: 'startTimer'; name: TimerName; ms: number; attemptId: string }
  /** Cancel timer `name` if it runs. */
  | { type: 'cancelTimer'; name: TimerName }
  /** Make the new connection the publishing one; re-send what the old one had not acknowledged. */
  | { type: 'switchPublishing'; attemptId: string; to: BrokerTarget }
  | ReportEffect
  /** Persist atomically: the broker to start from next boot, the applied version and the move in progress. */
  | { type: 'persist'; broker: BrokerTarget; appliedVersion: number; pending?: { target: BrokerTarget; version: number } }
  /** Publish the `migration:state` event (and log it at debug). */
  | { type: 'emit'; event: MigrationStateEvent };

/** Type of an effect. */
export type MigrationEffectType = MigrationEffect['type'];

/** What `transition` returns. */
export interface TransitionResult {
  /** The next state (the same object when the event was ignored). */
  state: MigrationState;
  /** Effects to execute in order (empty when the event was ignored). */
  effects: MigrationEffect[];
}
