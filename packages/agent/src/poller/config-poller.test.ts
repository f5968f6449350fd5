import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { fakeClock } from '../../test/fake-clock.ts';
import { formatBrokerUrl, type BrokerTarget } from '../broker-target.ts';
import type { MigrationState } from '../migration/migration-types.ts';
import { ConfigPoller, type ConfigPollerOptions } from './config-poller.ts';

const broker = (brokerId: number, port: number): BrokerTarget => ({ brokerId, protocol: 'mqtt', host: '127.0.0.1', port, url: formatBrokerUrl('mqtt', '127.0.0.1', port) });
const A = broker(1, 1883);
const B = broker(2, 1884);
const body = (b: BrokerTarget, version: number) => ({ mqtt: { brokerId: b.brokerId, broker: b.url, protocol: b.protocol, host: b.host, port: b.port }, version });

/** A fake config endpoint: answers from `answers` in order; records each request. */
function setup(o: Partial<ConfigPollerOptions>, answers: Array<() => Response>) {
  const clock = fakeClock();
  const requests: Array<{ url: string; etag: string | null }> = [];
  const assigned: Array<{ target: BrokerTarget; version: number }> = [];
  const state: MigrationState = { name: 'idle', current: A, appliedVersion: 1 };
  const fetchFn = (async (url: string, init: RequestInit) => {
    requests.push({ url, etag: new Headers(init.headers).get('if-none-match') });
    const next = answers.shift();
    if (!next) return new Promise<Response>(() => undefined); // held forever
    return next();
  }) as unknown as typeof fetch;
  const poller = new ConfigPoller({
    apiUrl: 'http://api', deviceUuid: 'dev-1', deviceToken: 'tok', pollChannel: true, pollIntervalMs: 1000, longPollS: 0, fallbackAfterMs: 5000,
    assign: (a) => assigned.push(a), state: () => state, clock, log: pino({ level: 'silent' }), fetch: fetchFn, random: () => 0.5, ...o,
  });
  return { clock, requests, assigned, poller };
}

const ok = (b: BrokerTarget, version: number, etag: string) => () => new Response(JSON.stringify(body(b, version)), { status: 200, headers: { etag } });
const notModified = (etag: string) => () => new Response(null, { status: 304, headers: { etag } });
const tick = () => new Promise((r) => setImmediate(r));

describe('ConfigPoller', () => {
  it('polls every interval with jitter and If-None-Match, and feeds a config naming another broker', async () => {
    const t = setup({}, [ok(A, 1, '"1.1"'), notModified('"1.1"'), ok(B, 3, '"3.2"')]);
    t.poller.start();
    assert.equal(t.requests.length, 0, 'a plain poll waits its first interval');
    t.clock.advance(1000);
    await tick();
    assert.deepEqual(t.assigned, [], 'the current broker is not fed');
    t.clock.advance(1000);
    await tick();
    assert.equal(t.requests[1]!.etag, '"1.1"');
    t.clock.advance(1000);
    await tick();
    assert.deepEqual(t.assigned, [{ target: B, version: 3 }]);
    assert.ok(!t.requests[0]!.url.includes('wait='));
    t.poller.stop();
  });

  it('long-polls with ?wait and If-None-Match right after the first answer', async () => {
    const t = setup({ longPollS: 10 }, [ok(A, 1, '"1.1"')]);
    t.poller.start();
    t.clock.advance(0);
    await tick();
    await tick();
    t.clock.advance(0);
    assert.equal(t.requests.length, 2);
    assert.match(t.requests[1]!.url, /\?wait=10$/);
    assert.equal(t.requests[1]!.etag, '"1.1"');
    t.poller.stop();
  });

  it('without the poll channel, polls only once MQTT has been down longer than fallbackAfterMs, and stops when it is back', async () => {
    const t = setup({ pollChannel: false }, [ok(B, 4, '"4.2"')]);
    t.poller.start();
    t.clock.advance(60_000);
    assert.equal(t.requests.length, 0);
    t.poller.mqttDown();
    t.clock.advance(4999);
    assert.equal(t.requests.length, 0);
    t.clock.advance(1);
    await tick();
    assert.equal(t.requests.length, 1);
    assert.deepEqual(t.assigned, [{ target: B, version: 4 }]);
    t.poller.mqttUp();
    t.clock.advance(60_000);
    assert.equal(t.requests.length, 1);
  });
});
