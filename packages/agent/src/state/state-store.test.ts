import { afterEach, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatBrokerUrl, type BrokerTarget } from '../broker-target.ts';
import { createStateStore, STATE_FILE_NAME, StateFileError, validateAgentState, type AgentState } from './state-store.ts';

function makeBroker(brokerId: number, overrides: Partial<BrokerTarget> = {}): BrokerTarget {
  const protocol = overrides.protocol ?? 'mqtt';
  const host = overrides.host ?? '127.0.0.1';
  const port = overrides.port ?? 1882 + brokerId;
  return { brokerId, protocol, host, port, url: formatBrokerUrl(protocol, host, port), ...overrides };
}

function makeState(overrides: Partial<AgentState> = {}): AgentState {
  return { deviceUuid: 'dev-1', broker: makeBroker(1), appliedVersion: 3, ...overrides };
}

describe('state-store', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-state-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('returns null when there is no state file (and no directory)', async () => {
    const store = createStateStore({ stateDir: join(dir, 'not-yet') });
    assert.equal(await store.load(), null);
  });

  it('round-trips a state, with and without a pending move', async () => {
    const store = createStateStore({ stateDir: join(dir, 'nested', 'dir') });
    const s1 = makeState();
    await store.save(s1);
    assert.deepEqual(await store.load(), s1);
    const s2 = makeState({
      broker: makeBroker(2, { protocol: 'wss', host: 'broker.example.com', port: 443 }),
      appliedVersion: 9,
      pending: { target: makeBroker(7, { host: '::1', protocol: 'mqtts', port: 8883 }), version: 12 },
    });
    await store.save(s2);
    assert.deepEqual(await store.load(), s2);
    const text = await readFile(store.path, 'utf8');
    assert.equal(JSON.parse(text).format, 1);
  });

  it('writes the file readable by its owner only', async () => {
    const store = createStateStore({ stateDir: dir });
    await store.save(makeState());
    assert.equal((await stat(store.path)).mode & 0o777, 0o600);
  });

  it('reports a corrupt file with its path and reason', async () => {
    const store = createStateStore({ stateDir: dir });
    await writeFile(store.path, '{"format":1, "deviceUuid": "dev-1", "bro');
    await assert.rejects(store.load(), (err: unknown) => {
      assert.ok(err instanceof StateFileError);
      assert.equal(err.code, 'STATE_FILE_CORRUPT');
      assert.equal(err.path, store.path);
      assert.match(err.message, new RegExp(`^${store.path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: corrupt agent state: not valid JSON`));
      return true;
    });
  });

  it('reports an empty file and binary garbage as corrupt, never crashing', async () => {
    const store = createStateStore({ stateDir: dir });
    for (const garbage of [Buffer.alloc(0), Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x7b])]) {
      await writeFile(store.path, garbage);
      await assert.rejects(store.load(), { name: 'StateFileError', code: 'STATE_FILE_CORRUPT' });
    }
  });

  const invalid: { name: string; value: unknown; reason: RegExp }[] = [
    { name: 'not an object', value: [1, 2], reason: /expected a JSON object/ },
    { name: 'wrong format', value: { ...makeState(), format: 2 }, reason: /format: expected 1, got 2/ },
    { name: 'no format', value: makeState(), reason: /format: expected 1, got nothing/ },
    { name: 'bad uuid', value: { format: 1, ...makeState({ deviceUuid: 'a/b' }) }, reason: /deviceUuid/ },
    { name: 'broker missing', value: { format: 1, deviceUuid: 'dev-1', appliedVersion: 1 }, reason: /broker: expected an object/ },
    {
      name: 'broker id zero',
      value: { format: 1, ...makeState({ broker: { ...makeBroker(1), brokerId: 0 } }) },
      reason: /broker\.brokerId: expected a positive integer, got 0/,
    },
    {
      name: 'bad protocol',
      value: { format: 1, ...makeState({ broker: { ...makeBroker(1), protocol: 'http' as 'mqtt' } }) },
      reason: /broker\.protocol: expected one of mqtt\|mqtts\|ws\|wss, got "http"/,
    },
    {
      name: 'port out of range',
      value: { format: 1, ...makeState({ broker: { ...makeBroker(1), port: 70000 } }) },
      reason: /broker\.port: expected an integer 1–65535, got 70000/,
    },
    {
      name: 'url disagrees',
      value: { format: 1, ...makeState({ broker: { ...makeBroker(1), url: 'mqtt://elsewhere:1883' } }) },
      reason: /broker\.url: expected "mqtt:\/\/127\.0\.0\.1:1883"/,
    },
    { name: 'negative version', value: { format: 1, ...makeState({ appliedVersion: -1 }) }, reason: /appliedVersion: expected a non-negative integer, got -1/ },
    { name: 'string version', value: { format: 1, ...makeState({ appliedVersion: '3' as unknown as number }) }, reason: /appliedVersion.*got "3"/ },
    {
      name: 'bad pending',
      value: { format: 1, ...makeState(), pending: { target: { brokerId: 2 }, version: 1.5 } },
      reason: /pending\.target\.protocol.*pending\.version: expected a non-negative integer, got 1\.5/,
    },
  ];
  for (const c of invalid) {
    it(`reports an invalid file: ${c.name}`, async () => {
      const store = createStateStore({ stateDir: dir });
      await writeFile(store.path, JSON.stringify(c.value));
      await assert.rejects(store.load(), (err: unknown) => {
        assert.ok(err instanceof StateFileError, String(err));
        assert.equal(err.code, 'STATE_FILE_INVALID');
        assert.ok(err.message.startsWith(`${store.path}: invalid agent state: `), err.message);
        assert.match(err.message, c.reason);
        return true;
      });
    });
  }

  it('reports every problem at once', async () => {
    const store = createStateStore({ stateDir: dir });
    await writeFile(store.path, JSON.stringify({ format: 1, deviceUuid: '', broker: null, appliedVersion: null }));
    await assert.rejects(store.load(), (err: unknown) => err instanceof StateFileError && err.reasons.length === 3);
  });

  it('reports a state path it cannot read as unreadable', async () => {
    const store = createStateStore({ stateDir: dir });
    await mkdir(store.path); // a directory where the file should be
    await assert.rejects(store.load(), { name: 'StateFileError', code: 'STATE_FILE_UNREADABLE' });
  });

  it('ignores a partial temp file left behind by a crash', async () => {
    const store = createStateStore({ stateDir: dir });
    const good = makeState({ appliedVersion: 4 });
    await store.save(good);
    await writeFile(join(dir, `.${STATE_FILE_NAME}.4242.abcdef.tmp`), '{"format":1,"deviceUuid":"dev-1","bro');
    assert.deepEqual(await store.load(), good);
    await store.save(makeState({ appliedVersion: 5 }));
    assert.equal((await store.load())?.appliedVersion, 5);
  });

  it('ends with one valid file after many concurrent saves from two stores', async () => {
    const one = createStateStore({ stateDir: dir });
    const two = createStateStore({ stateDir: dir });
    const saves: Promise<void>[] = [];
    for (let v = 1; v <= 40; v++) {
      saves.push((v % 2 ? one : two).save(makeState({ appliedVersion: v, broker: makeBroker(1 + (v % 3)) })));
    }
    await Promise.all(saves);
    const loaded = await one.load();
    assert.ok(loaded);
    assert.ok(loaded.appliedVersion >= 1 && loaded.appliedVersion <= 40);
    assert.deepEqual(loaded.broker, makeBroker(1 + (loaded.appliedVersion % 3)), 'fields of one save, never a mix');
    assert.deepEqual(await readdir(dir), [STATE_FILE_NAME], 'no temp file left');
  });

  it('applies saves through one store in call order', async () => {
    const store = createStateStore({ stateDir: dir });
    await Promise.all([1, 2, 3, 4, 5].map((v) => store.save(makeState({ appliedVersion: v }))));
    assert.equal((await store.load())?.appliedVersion, 5);
  });

  it('refuses to save an invalid state and leaves the file as it was', async () => {
    const store = createStateStore({ stateDir: dir });
    await store.save(makeState());
    await assert.rejects(store.save(makeState({ appliedVersion: Number.NaN })), TypeError);
    assert.equal((await store.load())?.appliedVersion, 3);
    // The chain survives a rejected save.
    await store.save(makeState({ appliedVersion: 8 }));
    assert.equal((await store.load())?.appliedVersion, 8);
  });

  it('validateAgentState drops unknown keys', () => {
    const r = validateAgentState({ ...makeState(), extra: true });
    assert.ok(r.ok);
    assert.deepEqual(r.value, makeState());
  });
});
