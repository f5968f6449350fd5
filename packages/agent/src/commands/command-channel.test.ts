import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { fakeClock, T0 } from '../../test/fake-clock.ts';
import { formatBrokerUrl, type BrokerTarget } from '../broker-target.ts';
import type { MigrationState } from '../migration/migration-types.ts';
import { CommandChannel } from './command-channel.ts';

const UUID = 'dev-1';
const TOPIC = `iot/device/${UUID}/command/broker-change`;
const broker = (brokerId: number, port: number): BrokerTarget => ({ brokerId, protocol: 'mqtt', host: '127.0.0.1', port, url: formatBrokerUrl('mqtt', '127.0.0.1', port) });
const A = broker(1, 1883);
const B = broker(2, 1884);
const C = broker(3, 1885);

function makeCommand(o: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    command: 'change-broker',
    brokerId: B.brokerId,
    broker: { protocol: 'mqtt', host: B.host, port: B.port },
    timestamp: new Date(T0).toISOString(),
    commandId: 'c1',
    version: 5,
    expiresAt: new Date(T0 + 60_000).toISOString(),
    ...o,
  };
}

function setup(initial: MigrationState = { name: 'idle', current: A, appliedVersion: 1 }) {
  const clock = fakeClock();
  const acks: Array<{ commandId: string; status: string; error?: string }> = [];
  const assigned: Array<{ target: BrokerTarget; version: number }> = [];
  const refreshed: string[] = [];
  let state: MigrationState = initial;
  const channel = new CommandChannel({
    deviceUuid: UUID,
    clock,
    log: pino({ level: 'silent' }),
    publish: async (topic, payload) => {
      assert.equal(topic, `${TOPIC}/ack`);
      acks.push(JSON.parse(payload));
    },
    assign: (a) => assigned.push(a),
    state: () => state,
    refresh: (reason) => refreshed.push(reason),
  });
  const send = (body: unknown): void => channel.handleMessage(TOPIC, Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)));
  const setState = (s: MigrationState): void => {
    state = s;
    channel.onMigrationState({ type: 'migration:state', from: 'idle', to: s.name, cause: 'assignment', brokerId: s.current.brokerId, version: 0, at: T0 });
  };
  return { clock, acks, assigned, refreshed, send, setState };
}

const moving = (target: BrokerTarget, version: number): MigrationState => ({
  name: 'connecting', current: A, appliedVersion: 1, target, assignmentVersion: version, source: 'command', attempt: 0, attemptId: `v${version}-a0`,
});

describe('CommandChannel', () => {
  it('acks received at once, feeds the machine, and acks completed once idle on the target', () => {
    const t = setup();
    t.send(makeCommand());
    assert.deepEqual(t.acks, [{ commandId: 'c1', status: 'received' }]);
    assert.deepEqual(t.assigned, [{ target: B, version: 5 }]);
    t.setState(moving(B, 5));
    assert.equal(t.acks.length, 1);
    t.setState({ name: 'idle', current: B, appliedVersion: 5 });
    assert.deepEqual(t.acks.at(-1), { commandId: 'c1', status: 'completed' });
  });

  it('acks an expired command failed: expired, does not act on it, and asks the shadow instead', () => {
    const t = setup();
    t.send(makeCommand({ expiresAt: new Date(T0 - 1).toISOString() }));
    assert.deepEqual(t.acks, [{ commandId: 'c1', status: 'received' }, { commandId: 'c1', status: 'failed', error: 'expired' }]);
    assert.deepEqual(t.assigned, []);
    assert.equal(t.refreshed.length, 1);
  });

  it('acks an unknown command failed: unknown command, and a malformed one with the problem', () => {
    const t = setup();
    t.send(makeCommand({ command: 'reboot' }));
    t.send(makeCommand({ commandId: 'c2', broker: { protocol: 'mqtt', host: 'h', port: 99999 } }));
    assert.deepEqual(t.acks.map((a) => [a.commandId, a.status, a.error]), [
      ['c1', 'received', undefined],
      ['c1', 'failed', 'unknown command'],
      ['c2', 'received', undefined],
      ['c2', 'failed', t.acks[3]!.error],
    ]);
    assert.match(t.acks[3]!.error!, /^invalid command: .*port/);
    assert.deepEqual(t.assigned, []);
  });

  it('ignores non-JSON, commands without an id, and a commandId delivered again', () => {
    const t = setup();
    t.send('{nope');
    t.send({ command: 'change-broker' });
    t.send(makeCommand());
    t.send(makeCommand());
    assert.deepEqual(t.acks, [{ commandId: 'c1', status: 'received' }]);
    assert.equal(t.assigned.length, 1);
  });

  it('acks completed at once when another channel already moved the device', () => {
    const t = setup({ name: 'idle', current: B, appliedVersion: 6 });
    t.send(makeCommand());
    assert.deepEqual(t.acks.map((a) => a.status), ['received', 'completed']);
    assert.deepEqual(t.assigned, []);
  });

  it('acks failed when a newer assignment to another broker supersedes the command', () => {
    const t = setup();
    t.send(makeCommand());
    t.setState(moving(C, 7));
    assert.deepEqual(t.acks.at(-1), { commandId: 'c1', status: 'failed', error: 'superseded by assignment v7 to broker 3' });
  });
});
