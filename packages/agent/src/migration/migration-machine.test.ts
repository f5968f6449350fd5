import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { formatBrokerUrl, type BrokerTarget } from '../broker-target.ts';
import {
  attemptIdOf,
  createMigrationMachine,
  timerOf,
  type Assignment,
  type MigrationEffect,
  type MigrationEvent,
  type MigrationEventType,
  type MigrationState,
  type MigrationStateName,
  type TimerName,
  type TransitionResult,
} from './migration-machine.ts';

// ───────────── builders ─────────────

const T0 = Date.UTC(2025, 0, 1);

function makeBroker(brokerId: number, overrides: Partial<BrokerTarget> = {}): BrokerTarget {
  const protocol = overrides.protocol ?? 'mqtt';
  const host = overrides.host ?? '127.0.0.1';
  const port = overrides.port ?? 1882 + brokerId;
  return { brokerId, protocol, host, port, url: formatBrokerUrl(protocol, host, port), ...overrides };
}

const A = makeBroker(1);
const B = makeBroker(2);
const C = makeBroker(3);

/** random() = 0.5: backoff delay = floor(0.5 × min(maxMs, 1000 × 2^attempt)). */
const machine = createMigrationMachine({
  random: () => 0.5,
  backoff: { baseMs: 1000, maxMs: 8000 },
  connectTimeoutMs: 5000,
  verifyTimeoutMs: 6000,
  switchTimeoutMs: 7000,
});

const idle = (appliedVersion = 1, current = A): MigrationState => ({ name: 'idle', current, appliedVersion });

function moving<N extends 'connecting' | 'verifying' | 'switching' | 'backoff'>(
  name: N,
  opts: { target?: BrokerTarget; version?: number; attempt?: number; current?: BrokerTarget; appliedVersion?: number } = {},
): MigrationState {
  const version = opts.version ?? 5;
  const attempt = opts.attempt ?? 0;
  const base = {
    current: opts.current ?? A,
    appliedVersion: opts.appliedVersion ?? 1,
    target: opts.target ?? B,
    assignmentVersion: version,
    source: 'shadow' as const,
    attempt,
    attemptId: attemptIdOf(version, attempt),
  };
  if (name === 'backoff') return { ...base, name: 'backoff', until: T0 + 500, lastError: 'refused' };
  return { ...base, name } as MigrationState;
}

const assign = (target: BrokerTarget, version: number, source: Assignment['source'] = 'shadow'): MigrationEvent => ({
  type: 'assignment',
  target,
  version,
  source,
  at: T0,
});

const ID = attemptIdOf(5, 0);
const ev = {
  connected: (attemptId = ID): MigrationEvent => ({ type: 'connected', attemptId, at: T0 }),
  connectFailed: (attemptId = ID): MigrationEvent => ({ type: 'connectFailed', attemptId, reason: 'ECONNREFUSED', at: T0 }),
  connectTimeout: (attemptId = ID): MigrationEvent => ({ type: 'connectTimeout', attemptId, at: T0 }),
  verified: (attemptId = ID): MigrationEvent => ({ type: 'verified', attemptId, at: T0 }),
  verifyFailed: (attemptId = ID): MigrationEvent => ({ type: 'verifyFailed', attemptId, reason: 'SUBACK 0x80', at: T0 }),
  verifyTimeout: (attemptId = ID): MigrationEvent => ({ type: 'verifyTimeout', attemptId, at: T0 }),
  newConnectionLost: (attemptId = ID): MigrationEvent => ({ type: 'newConnectionLost', attemptId, reason: 'ECONNRESET', at: T0 }),
  switched: (attemptId = ID): MigrationEvent => ({ type: 'switched', attemptId, at: T0 }),
  switchTimeout: (attemptId = ID): MigrationEvent => ({ type: 'switchTimeout', attemptId, at: T0 }),
  backoffElapsed: (attemptId = ID): MigrationEvent => ({ type: 'backoffElapsed', attemptId, at: T0 }),
  oldConnectionLost: (): MigrationEvent => ({ type: 'oldConnectionLost', reason: 'keepalive timeout', at: T0 }),
  abort: (): MigrationEvent => ({ type: 'abort', reason: 'agent stopping', at: T0 }),
};

/** Effects without the trailing emit, as `type` or `type:detail` strings, for compact tables. */
function summary(effects: MigrationEffect[]): string[] {
  return effects
    .filter((e) => e.type !== 'emit')
    .map((e) => {
      switch (e.type) {
        case 'openConnection':
          return `open:${e.target.brokerId}:${e.attemptId}`;
        case 'closeConnection':
          return `close:${e.which}:${e.attemptId}`;
        case 'subscribe':
          return `subscribe:${e.attemptId}`;
        case 'sendShadowGet':
          return `get:${e.attemptId}`;
        case 'startTimer':
          return `start:${e.name}:${e.ms}`;
        case 'cancelTimer':
          return `cancel:${e.name}`;
        case 'switchPublishing':
          return `switch:${e.to.brokerId}`;
        case 'report':
          return `report:${e.status}:${e.broker.brokerId}`;
        case 'persist':
          return `persist:${e.broker.brokerId}:${e.appliedVersion}${e.pending ? `:pending=${e.pending.target.brokerId}@${e.pending.version}` : ''}`;
      }
    });
}

function emitOf(r: TransitionResult) {
  const emits = r.effects.filter((e) => e.type === 'emit');
  assert.ok(emits.length >= 1, 'a transition emits migration:state');
  const last = emits[emits.length - 1];
  assert.ok(last && last.type === 'emit');
  return last.event;
}

// ───────────── the table: every state × every event ─────────────

interface Row {
  state: MigrationState;
  event: MigrationEvent;
  /** Expected next state name, or 'ignored' (same object, no effects). */
  to: MigrationStateName | 'ignored';
  effects?: string[];
}

const V = attemptIdOf(5, 0);
const stale = 'v4-a0';

const table: Record<MigrationStateName, Partial<Record<MigrationEventType, Row[]>>> = {
  idle: {
    assignment: [
      {
        state: idle(1),
        event: assign(B, 5),
        to: 'connecting',
        effects: ['persist:1:1:pending=2@5', 'report:migrating:1', `open:2:${V}`, 'start:connect:5000'],
      },
      { state: idle(5), event: assign(B, 5), to: 'ignored' },
      { state: idle(6), event: assign(B, 5), to: 'ignored' },
      { state: idle(1), event: assign(A, 5), to: 'idle', effects: ['persist:1:5', 'report:connected:1'] },
    ],
    connected: [{ state: idle(), event: ev.connected(), to: 'ignored' }],
    connectFailed: [{ state: idle(), event: ev.connectFailed(), to: 'ignored' }],
    connectTimeout: [{ state: idle(), event: ev.connectTimeout(), to: 'ignored' }],
    verified: [{ state: idle(), event: ev.verified(), to: 'ignored' }],
    verifyFailed: [{ state: idle(), event: ev.verifyFailed(), to: 'ignored' }],
    verifyTimeout: [{ state: idle(), event: ev.verifyTimeout(), to: 'ignored' }],
    newConnectionLost: [{ state: idle(), event: ev.newConnectionLost(), to: 'ignored' }],
    switched: [{ state: idle(), event: ev.switched(), to: 'ignored' }],
    switchTimeout: [{ state: idle(), event: ev.switchTimeout(), to: 'ignored' }],
    backoffElapsed: [{ state: idle(), event: ev.backoffElapsed(), to: 'ignored' }],
    oldConnectionLost: [{ state: idle(), event: ev.oldConnectionLost(), to: 'ignored' }],
    abort: [{ state: idle(), event: ev.abort(), to: 'ignored' }],
  },
  connecting: {
    assignment: [
      { state: moving('connecting'), event: assign(B, 5), to: 'ignored' },
      { state: moving('connecting'), event: assign(C, 4), to: 'ignored' },
      { state: moving('connecting'), event: assign(C, 1), to: 'ignored' },
      {
        state: moving('connecting'),
        event: assign(C, 6),
        to: 'connecting',
        effects: ['cancel:connect', `close:new:${V}`, 'persist:1:1:pending=3@6', 'report:migrating:1', 'open:3:v6-a0', 'start:connect:5000'],
      },
      { state: moving('connecting'), event: assign(B, 6), to: 'connecting', effects: ['persist:1:1:pending=2@6'] },
      {
        state: moving('connecting'),
        event: assign(A, 6),
        to: 'idle',
        effects: ['cancel:connect', `close:new:${V}`, 'persist:1:6', 'report:connected:1'],
      },
    ],
    connected: [
      {
        state: moving('connecting'),
        event: ev.connected(),
        to: 'verifying',
        effects: ['cancel:connect', `subscribe:${V}`, `get:${V}`, 'start:verify:6000'],
      },
      { state: moving('connecting'), event: ev.connected(stale), to: 'ignored' },
    ],
    connectFailed: [
      {
        state: moving('connecting'),
        event: ev.connectFailed(),
        to: 'backoff',
        effects: ['cancel:connect', `close:new:${V}`, 'report:error:1', 'start:backoff:500'],
      },
      { state: moving('connecting'), event: ev.connectFailed(stale), to: 'ignored' },
    ],
    connectTimeout: [
      {
        state: moving('connecting', { attempt: 2, version: 5 }),
        event: ev.connectTimeout(attemptIdOf(5, 2)),
        to: 'backoff',
        effects: ['cancel:connect', 'close:new:v5-a2', 'report:error:1', 'start:backoff:2000'],
      },
      { state: moving('connecting'), event: ev.connectTimeout(stale), to: 'ignored' },
    ],
    newConnectionLost: [
      {
        state: moving('connecting'),
        event: ev.newConnectionLost(),
        to: 'backoff',
        effects: ['cancel:connect', `close:new:${V}`, 'report:error:1', 'start:backoff:500'],
      },
    ],
    verified: [{ state: moving('connecting'), event: ev.verified(), to: 'ignored' }],
    verifyFailed: [{ state: moving('connecting'), event: ev.verifyFailed(), to: 'ignored' }],
    verifyTimeout: [{ state: moving('connecting'), event: ev.verifyTimeout(), to: 'ignored' }],
    switched: [{ state: moving('connecting'), event: ev.switched(), to: 'ignored' }],
    switchTimeout: [{ state: moving('connecting'), event: ev.switchTimeout(), to: 'ignored' }],
    backoffElapsed: [{ state: moving('connecting'), event: ev.backoffElapsed(), to: 'ignored' }],
    oldConnectionLost: [{ state: moving('connecting'), event: ev.oldConnectionLost(), to: 'ignored' }],
    abort: [{ state: moving('connecting'), event: ev.abort(), to: 'idle', effects: ['cancel:connect', `close:new:${V}`] }],
  },
  verifying: {
    assignment: [
      { state: moving('verifying'), event: assign(B, 5), to: 'ignored' },
      { state: moving('verifying'), event: assign(C, 3), to: 'ignored' },
      {
        state: moving('verifying'),
        event: assign(C, 7, 'command'),
        to: 'connecting',
        effects: ['cancel:verify', `close:new:${V}`, 'persist:1:1:pending=3@7', 'report:migrating:1', 'open:3:v7-a0', 'start:connect:5000'],
      },
      { state: moving('verifying'), event: assign(B, 7), to: 'verifying', effects: ['persist:1:1:pending=2@7'] },
      {
        state: moving('verifying'),
        event: assign(A, 7),
        to: 'idle',
        effects: ['cancel:verify', `close:new:${V}`, 'persist:1:7', 'report:connected:1'],
      },
    ],
    verified: [
      {
        state: moving('verifying'),
        event: ev.verified(),
        to: 'switching',
        effects: ['cancel:verify', 'switch:2', 'report:connected:2', 'start:switch:7000'],
      },
      { state: moving('verifying'), event: ev.verified(stale), to: 'ignored' },
    ],
    verifyFailed: [
      {
        state: moving('verifying'),
        event: ev.verifyFailed(),
        to: 'backoff',
        effects: ['cancel:verify', `close:new:${V}`, 'report:error:1', 'start:backoff:500'],
      },
      { state: moving('verifying'), event: ev.verifyFailed(stale), to: 'ignored' },
    ],
    verifyTimeout: [
      {
        state: moving('verifying'),
        event: ev.verifyTimeout(),
        to: 'backoff',
        effects: ['cancel:verify', `close:new:${V}`, 'report:error:1', 'start:backoff:500'],
      },
      { state: moving('verifying'), event: ev.verifyTimeout(stale), to: 'ignored' },
    ],
    newConnectionLost: [
      {
        state: moving('verifying'),
        event: ev.newConnectionLost(),
        to: 'backoff',
        effects: ['cancel:verify', `close:new:${V}`, 'report:error:1', 'start:backoff:500'],
      },
      { state: moving('verifying'), event: ev.newConnectionLost(stale), to: 'ignored' },
    ],
    connected: [{ state: moving('verifying'), event: ev.connected(), to: 'ignored' }],
    connectFailed: [{ state: moving('verifying'), event: ev.connectFailed(), to: 'ignored' }],
    connectTimeout: [{ state: moving('verifying'), event: ev.connectTimeout(), to: 'ignored' }],
    switched: [{ state: moving('verifying'), event: ev.switched(), to: 'ignored' }],
    switchTimeout: [{ state: moving('verifying'), event: ev.switchTimeout(), to: 'ignored' }],
    backoffElapsed: [{ state: moving('verifying'), event: ev.backoffElapsed(), to: 'ignored' }],
    oldConnectionLost: [{ state: moving('verifying'), event: ev.oldConnectionLost(), to: 'ignored' }],
    abort: [{ state: moving('verifying'), event: ev.abort(), to: 'idle', effects: ['cancel:verify', `close:new:${V}`] }],
  },
  switching: {
    assignment: [
      { state: moving('switching'), event: assign(B, 5), to: 'ignored' },
      { state: moving('switching'), event: assign(C, 2), to: 'ignored' },
      { state: moving('switching'), event: assign(C, 6), to: 'switching', effects: [] },
    ],
    switched: [
      { state: moving('switching'), event: ev.switched(), to: 'idle', effects: ['cancel:switch', 'persist:2:5', `close:old:${V}`] },
      { state: moving('switching'), event: ev.switched(stale), to: 'ignored' },
    ],
    switchTimeout: [
      { state: moving('switching'), event: ev.switchTimeout(), to: 'idle', effects: ['cancel:switch', 'persist:2:5', `close:old:${V}`] },
      { state: moving('switching'), event: ev.switchTimeout(stale), to: 'ignored' },
    ],
    newConnectionLost: [
      {
        state: moving('switching'),
        event: ev.newConnectionLost(),
        to: 'idle',
        effects: ['cancel:switch', 'persist:2:5', `close:old:${V}`],
      },
    ],
    abort: [{ state: moving('switching'), event: ev.abort(), to: 'idle', effects: ['cancel:switch', 'persist:2:5', `close:old:${V}`] }],
    connected: [{ state: moving('switching'), event: ev.connected(), to: 'ignored' }],
    connectFailed: [{ state: moving('switching'), event: ev.connectFailed(), to: 'ignored' }],
    connectTimeout: [{ state: moving('switching'), event: ev.connectTimeout(), to: 'ignored' }],
    verified: [{ state: moving('switching'), event: ev.verified(), to: 'ignored' }],
    verifyFailed: [{ state: moving('switching'), event: ev.verifyFailed(), to: 'ignored' }],
    verifyTimeout: [{ state: moving('switching'), event: ev.verifyTimeout(), to: 'ignored' }],
    backoffElapsed: [{ state: moving('switching'), event: ev.backoffElapsed(), to: 'ignored' }],
    oldConnectionLost: [{ state: moving('switching'), event: ev.oldConnectionLost(), to: 'ignored' }],
  },
  backoff: {
    assignment: [
      { state: moving('backoff'), event: assign(B, 5), to: 'ignored' },
      { state: moving('backoff'), event: assign(C, 4), to: 'ignored' },
      {
        state: moving('backoff', { attempt: 3 }),
        event: assign(C, 8, 'poll'),
        to: 'connecting',
        effects: ['cancel:backoff', 'persist:1:1:pending=3@8', 'report:migrating:1', 'open:3:v8-a0', 'start:connect:5000'],
      },
      { state: moving('backoff'), event: assign(A, 8), to: 'idle', effects: ['cancel:backoff', 'persist:1:8', 'report:connected:1'] },
    ],
    backoffElapsed: [
      {
        state: moving('backoff', { attempt: 1 }),
        event: ev.backoffElapsed(attemptIdOf(5, 1)),
        to: 'connecting',
        effects: ['cancel:backoff', 'report:migrating:1', 'open:2:v5-a2', 'start:connect:5000'],
      },
      { state: moving('backoff', { attempt: 1 }), event: ev.backoffElapsed(stale), to: 'ignored' },
    ],
    oldConnectionLost: [
      {
        state: moving('backoff'),
        event: ev.oldConnectionLost(),
        to: 'connecting',
        effects: ['cancel:backoff', 'report:migrating:1', 'open:2:v5-a1', 'start:connect:5000'],
      },
    ],
    abort: [{ state: moving('backoff'), event: ev.abort(), to: 'idle', effects: ['cancel:backoff'] }],
    connected: [{ state: moving('backoff'), event: ev.connected(), to: 'ignored' }],
    connectFailed: [{ state: moving('backoff'), event: ev.connectFailed(), to: 'ignored' }],
    connectTimeout: [{ state: moving('backoff'), event: ev.connectTimeout(), to: 'ignored' }],
    verified: [{ state: moving('backoff'), event: ev.verified(), to: 'ignored' }],
    verifyFailed: [{ state: moving('backoff'), event: ev.verifyFailed(), to: 'ignored' }],
    verifyTimeout: [{ state: moving('backoff'), event: ev.verifyTimeout(), to: 'ignored' }],
    newConnectionLost: [{ state: moving('backoff'), event: ev.newConnectionLost(), to: 'ignored' }],
    switched: [{ state: moving('backoff'), event: ev.switched(), to: 'ignored' }],
    switchTimeout: [{ state: moving('backoff'), event: ev.switchTimeout(), to: 'ignored' }],
  },
};

const ALL_EVENTS: MigrationEventType[] = [
  'assignment',
  'connected',
  'connectFailed',
  'connectTimeout',
  'verified',
  'verifyFailed',
  'verifyTimeout',
  'newConnectionLost',
  'switched',
  'switchTimeout',
  'backoffElapsed',
  'oldConnectionLost',
  'abort',
];

describe('migration-machine transition table', () => {
  it('covers every state × every event', () => {
    for (const [stateName, rows] of Object.entries(table)) {
      for (const type of ALL_EVENTS) assert.ok(rows[type]?.length, `${stateName} × ${type} has a row`);
    }
  });

  for (const [stateName, rows] of Object.entries(table)) {
    for (const [type, list] of Object.entries(rows)) {
      list.forEach((row, i) => {
        const label = `${stateName} × ${type} #${i + 1} → ${row.to}`;
        it(label, () => {
          assert.equal(row.event.type, type);
          assert.equal(row.state.name, stateName);
          const frozen = structuredClone(row.state);
          const r = machine.transition(row.state, row.event);
          assert.deepEqual(row.state, frozen, 'the input state is not mutated');
          if (row.to === 'ignored') {
            assert.equal(r.state, row.state, 'same state object');
            assert.deepEqual(r.effects, []);
            return;
          }
          assert.equal(r.state.name, row.to);
          if (row.effects) assert.deepEqual(summary(r.effects), row.effects);
          const e = emitOf(r);
          assert.equal(e.from, stateName);
          assert.equal(e.to, row.to);
          assert.equal(e.cause, type);
          assert.equal(r.effects[r.effects.length - 1]?.type, 'emit', 'emit comes last');
        });
      });
    }
  }
});

// ───────────── behaviours ─────────────

/** Runs events through the machine, returning the final state and every effect. */
function run(start: MigrationState, events: MigrationEvent[]) {
  let state = start;
  const effects: MigrationEffect[] = [];
  for (const e of events) {
    const r = machine.transition(state, e);
    state = r.state;
    effects.push(...r.effects);
  }
  return { state, effects };
}

describe('migration-machine behaviours', () => {
  it('moves make-before-break: migrating → connect → verify → switch → connected → close old → persist', () => {
    const { state, effects } = run(idle(1), [assign(B, 5), ev.connected(), ev.verified(), ev.switched()]);
    assert.deepEqual(state, { name: 'idle', current: B, appliedVersion: 5 });
    const order = summary(effects);
    assert.deepEqual(order, [
      'persist:1:1:pending=2@5',
      'report:migrating:1',
      `open:2:${V}`,
      'start:connect:5000',
      'cancel:connect',
      `subscribe:${V}`,
      `get:${V}`,
      'start:verify:6000',
      'cancel:verify',
      'switch:2',
      'report:connected:2',
      'start:switch:7000',
      'cancel:switch',
      'persist:2:5',
      `close:old:${V}`,
    ]);
    const connected = effects.find((e) => e.type === 'report' && e.status === 'connected');
    assert.deepEqual(connected, {
      type: 'report',
      status: 'connected',
      broker: B,
      previousBrokerId: 1,
      migratedAt: T0,
      assignmentVersion: 5,
    });
  });

  it('moves once when the same assignment arrives twice, and on two channels', () => {
    const { effects } = run(idle(1), [
      assign(B, 5, 'shadow'),
      assign(B, 5, 'command'),
      ev.connected(),
      assign(B, 5, 'job'),
      ev.verified(),
      assign(B, 5, 'poll'),
      ev.switched(),
      assign(B, 5, 'shadow'),
    ]);
    assert.equal(effects.filter((e) => e.type === 'openConnection').length, 1);
    assert.equal(effects.filter((e) => e.type === 'switchPublishing').length, 1);
  });

  it('drops an older assignment after a newer one was applied', () => {
    const { state, effects } = run(idle(1), [assign(B, 5), ev.connected(), ev.verified(), ev.switched(), assign(C, 4)]);
    assert.deepEqual(state, { name: 'idle', current: B, appliedVersion: 5 });
    assert.equal(effects.filter((e) => e.type === 'openConnection').length, 1);
  });

  it('retries after a failure with capped exponential backoff, then succeeds', () => {
    const start = idle(1);
    const r1 = run(start, [assign(B, 5), ev.connectFailed(attemptIdOf(5, 0))]);
    assert.equal(r1.state.name, 'backoff');
    assert.equal(r1.state.current, A, 'still on the old broker');
    const err = r1.effects.find((e) => e.type === 'report' && e.status === 'error');
    assert.deepEqual(err, {
      type: 'report',
      status: 'error',
      broker: A,
      targetBrokerId: 2,
      error: 'ECONNREFUSED',
      assignmentVersion: 5,
      attempt: 0,
      retryInMs: 500,
    });
    // attempts 1..5 fail too: delays 1000, 2000, 4000 (cap 8000 × 0.5), 4000
    const delays: number[] = [];
    let state: MigrationState = r1.state;
    for (let attempt = 1; attempt <= 4; attempt++) {
      state = machine.transition(state, ev.backoffElapsed(attemptIdOf(5, attempt - 1))).state;
      assert.equal(state.name, 'connecting');
      const r = machine.transition(state, ev.connectTimeout(attemptIdOf(5, attempt)));
      const timer = r.effects.find((e) => e.type === 'startTimer');
      assert.ok(timer && timer.type === 'startTimer' && timer.name === 'backoff');
      delays.push(timer.ms);
      state = r.state;
      assert.equal(state.name === 'backoff' && state.until, T0 + timer.ms);
    }
    assert.deepEqual(delays, [1000, 2000, 4000, 4000]);
    const final = run(state, [ev.backoffElapsed(attemptIdOf(5, 4)), ev.connected(attemptIdOf(5, 5)), ev.verified(attemptIdOf(5, 5)), ev.switched(attemptIdOf(5, 5))]);
    assert.deepEqual(final.state, { name: 'idle', current: B, appliedVersion: 5 });
  });

  it('uses the injected random source for the jitter', () => {
    const zero = createMigrationMachine({ random: () => 0, backoff: { baseMs: 1000, maxMs: 8000 } });
    const r = zero.transition(moving('connecting'), ev.connectFailed());
    assert.equal(r.state.name === 'backoff' && r.state.until, T0);
  });

  it('ignores a late CONNACK from a preempted attempt', () => {
    const { state, effects } = run(idle(1), [assign(B, 5), assign(C, 6), ev.connected(attemptIdOf(5, 0)), ev.verified(attemptIdOf(5, 0))]);
    assert.equal(state.name, 'connecting');
    assert.equal(state.name === 'connecting' && state.target, C);
    assert.equal(effects.filter((e) => e.type === 'switchPublishing').length, 0);
  });

  it('holds an assignment that arrives during the switch and applies it after', () => {
    const { state, effects } = run(idle(1), [assign(B, 5), ev.connected(), ev.verified(), assign(C, 6), ev.switched()]);
    assert.equal(state.name, 'connecting');
    assert.ok(state.name === 'connecting');
    assert.equal(state.current, B, 'the completed move made B current');
    assert.equal(state.target, C);
    assert.equal(state.appliedVersion, 5);
    const emits = effects.filter((e) => e.type === 'emit').map((e) => (e.type === 'emit' ? `${e.event.from}→${e.event.to}` : ''));
    assert.deepEqual(emits.slice(-2), ['switching→idle', 'idle→connecting']);
  });

  it('reports connected without moving when assigned the broker it is on', () => {
    const r = machine.transition(idle(1), assign(A, 2));
    assert.deepEqual(r.state, { name: 'idle', current: A, appliedVersion: 2 });
    assert.ok(!r.effects.some((e) => e.type === 'openConnection' || e.type === 'closeConnection'));
    assert.deepEqual(
      r.effects.find((e) => e.type === 'report'),
      { type: 'report', status: 'connected', broker: A, assignmentVersion: 2 },
    );
  });

  it('treats the same broker id at a new address as a move', () => {
    const moved = makeBroker(1, { host: '10.0.0.9' });
    const r = machine.transition(idle(1), assign(moved, 2));
    assert.equal(r.state.name, 'connecting');
  });

  it('starts idle on the persisted broker after a restart mid-move; the re-delivered assignment resumes it', () => {
    const boot = machine.initialState({ broker: A, appliedVersion: 1 });
    assert.deepEqual(boot, { name: 'idle', current: A, appliedVersion: 1 });
    const r = machine.transition(boot, assign(B, 5, 'shadow'));
    assert.equal(r.state.name, 'connecting');
  });

  it('emits migration:state with from, to, cause, reason and attempt', () => {
    const r = machine.transition(moving('connecting'), ev.connectFailed());
    assert.deepEqual(emitOf(r), {
      type: 'migration:state',
      from: 'connecting',
      to: 'backoff',
      cause: 'connectFailed',
      reason: 'ECONNREFUSED',
      attemptId: V,
      brokerId: 1,
      targetBrokerId: 2,
      version: 5,
      at: T0,
    });
  });
});

// ───────────── property: make before break ─────────────

const POOL = [A, B, C, makeBroker(4, { protocol: 'wss', host: 'broker.example', port: 443 })];

type Step =
  | { kind: 'assignment'; broker: number; versionDelta: number; source: Assignment['source'] }
  /** The natural next success event of the current state (so random walks do complete moves). */
  | { kind: 'progress' }
  /** A natural failure of the current state. */
  | { kind: 'fail'; which: number }
  | { kind: 'any'; type: Exclude<MigrationEventType, 'assignment'>; stale: boolean };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('assignment' as const),
      broker: fc.integer({ min: 0, max: POOL.length - 1 }),
      versionDelta: fc.integer({ min: -2, max: 2 }),
      source: fc.constantFrom('shadow' as const, 'command' as const, 'job' as const, 'poll' as const),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ kind: 'progress' as const }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fail' as const), which: fc.nat(2) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('any' as const),
      type: fc.constantFrom(...ALL_EVENTS.filter((t): t is Exclude<MigrationEventType, 'assignment'> => t !== 'assignment')),
      stale: fc.boolean(),
    }),
  },
);

function eventOf(type: Exclude<MigrationEventType, 'assignment'>, attemptId: string, at: number): MigrationEvent {
  switch (type) {
    case 'connectFailed':
    case 'verifyFailed':
    case 'newConnectionLost':
      return { type, attemptId, reason: 'boom', at };
    case 'oldConnectionLost':
    case 'abort':
      return { type, reason: 'boom', at };
    default:
      return { type, attemptId, at };
  }
}

const PROGRESS: Record<MigrationStateName, Exclude<MigrationEventType, 'assignment'>> = {
  idle: 'oldConnectionLost', // unused: see toEvent
  connecting: 'connected',
  verifying: 'verified',
  switching: 'switched',
  backoff: 'backoffElapsed',
};
const FAILURES: Record<MigrationStateName, Exclude<MigrationEventType, 'assignment'>[]> = {
  idle: ['oldConnectionLost'],
  connecting: ['connectFailed', 'connectTimeout', 'newConnectionLost'],
  verifying: ['verifyFailed', 'verifyTimeout', 'newConnectionLost'],
  switching: ['newConnectionLost', 'switchTimeout', 'abort'],
  backoff: ['oldConnectionLost', 'abort'],
};

function toEvent(step: Step, state: MigrationState, maxVersion: number, at: number): MigrationEvent {
  const live = state.name === 'idle' ? 'v999-a999' : state.attemptId;
  switch (step.kind) {
    case 'assignment': {
      const target = POOL[step.broker] ?? A;
      return { type: 'assignment', target, version: Math.max(0, maxVersion + step.versionDelta), source: step.source, at };
    }
    case 'progress':
      if (state.name === 'idle') {
        // From idle, progress is a fresh assignment to another broker.
        const target = POOL[(POOL.indexOf(state.current) + 1) % POOL.length] ?? B;
        return { type: 'assignment', target, version: maxVersion, source: 'shadow', at };
      }
      return eventOf(PROGRESS[state.name], live, at);
    case 'fail': {
      const list = FAILURES[state.name];
      return eventOf(list[step.which % list.length] ?? 'abort', live, at);
    }
    case 'any':
      return eventOf(step.type, step.stale ? 'v999-a999' : live, at);
  }
}

describe('migration-machine properties', () => {
  it('never leaves the device without a current broker, and closes the old connection only after switching publishing', () => {
    let completedMoves = 0;
    let failures = 0;
    fc.assert(
      fc.property(fc.array(stepArb, { maxLength: 60 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (steps, rnd) => {
        const m = createMigrationMachine({ random: () => rnd });
        let state: MigrationState = m.initialState({ broker: A, appliedVersion: 0 });
        let maxVersion = 1;
        let at = T0;
        const switched = new Map<string, BrokerTarget>(); // attemptId → broker publishing moved to
        const openNew = new Set<string>();
        const timers = new Set<TimerName>();
        let publishingOn: BrokerTarget = A;
        for (const step of steps) {
          at += 100;
          const event = toEvent(step, state, maxVersion, at);
          if (event.type === 'assignment') maxVersion = Math.max(maxVersion, event.version + 1);
          const before = state;
          const r = m.transition(state, event);
          for (const e of r.effects) {
            switch (e.type) {
              case 'openConnection':
                openNew.add(e.attemptId);
                break;
              case 'switchPublishing':
                assert.ok(openNew.has(e.attemptId), 'switches only to a connection it opened');
                openNew.delete(e.attemptId);
                switched.set(e.attemptId, e.to);
                publishingOn = e.to;
                break;
              case 'closeConnection':
                if (e.which === 'old') {
                  completedMoves++;
                  assert.ok(switched.has(e.attemptId), `close old for ${e.attemptId} only after switchPublishing`);
                } else {
                  assert.ok(!switched.has(e.attemptId), 'never closes the connection publishing moved to as "new"');
                  openNew.delete(e.attemptId);
                }
                break;
              case 'startTimer':
                assert.ok(!timers.has(e.name), `timer ${e.name} not started while it runs`);
                timers.add(e.name);
                break;
              case 'cancelTimer':
                timers.delete(e.name);
                break;
              case 'report':
                if (e.status === 'error') failures++;
                break;
              case 'persist':
                assert.ok(POOL.some((b) => b === e.broker));
                break;
              default:
                break;
            }
          }
          state = r.state;
          // A current broker, always; it is the one publishing runs on.
          assert.ok(POOL.includes(state.current), 'state has a current broker from the pool');
          assert.equal(state.name === 'switching' ? state.target : state.current, publishingOn, 'publishing runs on current (on target while switching)');
          assert.ok(state.appliedVersion >= before.appliedVersion, 'appliedVersion never decreases');
          // At most one new connection, and none outside connecting/verifying.
          assert.ok(openNew.size <= 1, 'at most one new connection at a time');
          if (state.name === 'idle' || state.name === 'backoff' || state.name === 'switching') assert.equal(openNew.size, 0);
          // Exactly the state's own timer runs.
          const own = timerOf(state);
          assert.deepEqual([...timers], own ? [own] : [], `timers in ${state.name}`);
          if (state.name !== 'idle') assert.ok(state.assignmentVersion > state.appliedVersion);
          if (r.state !== before) assert.equal(r.effects.at(-1)?.type, 'emit', 'every transition emits');
          else assert.deepEqual(r.effects, []);
        }
      }),
      { numRuns: 2000 },
    );
    // The generator must reach the interesting paths, or the property proves little.
    assert.ok(completedMoves > 200, `completed moves: ${completedMoves}`);
    assert.ok(failures > 100, `failed attempts: ${failures}`);
  });
});
