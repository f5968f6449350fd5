/**
 * Issue 5: every device → server MQTT topic that shadow-fuzz.test.ts does not cover, under hostile input — jobs
 * requests in both namespaces, presence (`…/status`) and command acks — on PostgreSQL + Mosquitto (an anonymous
 * publisher: it may publish anywhere, as a device could on a broker without ACLs), and a share on PGlite + Aedes
 * (each device on its own topics).
 *
 * The messages (test/helpers/mqtt-fuzz-cases.ts) are malformed or cannot apply, so afterwards every table but the
 * audit log must be byte-for-byte what it was. Every jobs request gets exactly one answer — `accepted` only where a
 * read may be answered, otherwise `rejected` with an AWS code that fits (never InternalError) and the clientToken
 * echoed —, status messages and acks get silence, odd jobs topics silence or `InvalidTopic`, and the server stays up.
 *
 * Reproduce with the seed it prints: `SWITCHYARD_FUZZ_SEED=<n> npm test -- test/integration/mqtt-fuzz.test.ts`.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt, { type MqttClient } from 'mqtt';
import { ackCases, jobsCases, oddTopicCases, statusCases, type FuzzDevice, type MqttCase, type MqttFuzzContext } from '../helpers/mqtt-fuzz-cases.ts';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';
import { onceEvent, withTimeout } from '../helpers/wait.ts';

const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20_250_106);
const NO_LIMITS = { SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0', SWITCHYARD_MIGRATION_TIMEOUT_S: '86400' };
const REPLY_FILTERS = ['iot/device/+/jobs/+/+', 'iot/device/+/jobs/+/+/+', '$aws/things/+/jobs/+/+', '$aws/things/+/jobs/+/+/+', 'iot/device/+/status/+', 'iot/device/+/command/broker-change/ack/+'];

interface Received {
  topic: string;
  raw: Buffer;
}

/** Registers `n` devices, each with an IN_PROGRESS job at the head of its queue, a QUEUED one and a SUCCEEDED one. */
async function fuzzDevices(env: TestEnv, n: number, prefix: string): Promise<Array<FuzzDevice & { token: string }>> {
  const out: Array<FuzzDevice & { token: string }> = [];
  for (let i = 0; i < n; i++) {
    const d = await env.createDevice({ uuid: uniqueId(prefix) });
    const job = async (): Promise<string> => (await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'reboot', jobData: { i } })).body.jobId as string;
    const done = await job();
    const dev = (method: string, path: string, body: unknown) => env.api(method, `/api/v1/devices/${d.uuid}${path}`, body, { token: d.token });
    assert.equal((await dev('PUT', '/jobs/$next', {})).status, 200);
    assert.equal((await dev('POST', `/jobs/${done}`, { status: 'SUCCEEDED' })).status, 200);
    const inProgress = await job();
    assert.equal((await dev('PUT', '/jobs/$next', { statusDetails: { step: 'one' } })).body.execution.jobId, inProgress);
    out.push({ uuid: d.uuid, token: d.token, inProgress, queued: await job(), done });
  }
  return out;
}

/** Waits until the outbox has delivered what the set-up queued (notifications of the jobs created). */
async function outboxSettled(env: TestEnv): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const { rows } = await env.sy.db.query<{ n: string }>('SELECT count(*) AS n FROM outbox');
    if (Number(rows[0]!.n) === 0) return;
    if (Date.now() > deadline) throw new Error(`the outbox still holds ${rows[0]!.n} rows after 15 s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function dumpTables(env: TestEnv): Promise<Map<string, string>> {
  const { rows: tables } = await env.sy.db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' AND table_name <> 'audit_log' ORDER BY table_name`,
  );
  const out = new Map<string, string>();
  for (const { table_name: t } of tables) {
    const { rows } = await env.sy.db.query<{ dump: string }>(`SELECT coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb)::text AS dump FROM "${t}" t`);
    out.set(t, rows[0]!.dump);
  }
  return out;
}

/**
 * Publishes every case at QoS 1 (at most `window` PUBACKs outstanding, at most `perDevice` jobs requests of one device
 * unanswered, so that no queue limit can refuse anything), waits for every expected reply, and returns what came back
 * on topics the run itself did not publish on.
 */
async function run(client: MqttClient, monitor: { received: Received[]; progress: { next(): Promise<void>; notify(): void } }, cases: MqttCase[], o: { window: number; perDevice: number }): Promise<Received[]> {
  const published = new Set(cases.map((c) => c.topic));
  const isReply = (r: Received): boolean => !published.has(r.topic);
  const pending = new Map<string, number>();
  const outstandingOf = new Map<string, number>();
  let expectedReplies = 0;
  let unacked = 0;
  let scanned = 0;
  let failure: Error | undefined;
  const deviceOfTopic = new Map(cases.filter((c) => c.device).map((c) => [c.topic, c.device!]));
  const onClose = (): void => {
    failure ??= new Error('the broker closed the fuzz publisher');
    monitor.progress.notify();
  };
  client.on('close', onClose);
  const settle = (): void => {
    for (; scanned < monitor.received.length; scanned++) {
      const r = monitor.received[scanned]!;
      if (!isReply(r)) continue;
      const request = r.topic.replace(/\/(accepted|rejected)$/, '');
      const device = pending.get(request) !== undefined ? deviceOfTopic.get(request) : undefined;
      if (device !== undefined) outstandingOf.set(device, (outstandingOf.get(device) ?? 1) - 1);
    }
  };
  const unanswered = (): string[] => {
    const seen = new Map<string, number>();
    for (const r of monitor.received) if (isReply(r)) seen.set(r.topic.replace(/\/(accepted|rejected)$/, ''), (seen.get(r.topic.replace(/\/(accepted|rejected)$/, '')) ?? 0) + 1);
    return [...pending].filter(([t, n]) => (seen.get(t) ?? 0) < n).map(([t]) => `${t} ${cases.find((c) => c.topic === t)?.body.toString('utf8').slice(0, 100)}`);
  };
  for (const [i, c] of cases.entries()) {
    for (;;) {
      settle();
      const busy = c.device !== undefined && (outstandingOf.get(c.device) ?? 0) >= o.perDevice;
      if (failure || (!busy && unacked < o.window)) break;
      await withTimeout(monitor.progress.next(), 60_000, `progress at message ${i}/${cases.length} (${unacked} unacked; unanswered: ${unanswered().slice(0, 5).join(' | ')})`);
    }
    if (failure) throw failure;
    unacked++;
    if (c.expect.kind === 'reply') {
      expectedReplies++;
      pending.set(c.topic, (pending.get(c.topic) ?? 0) + 1);
      if (c.device) outstandingOf.set(c.device, (outstandingOf.get(c.device) ?? 0) + 1);
    }
    client.publish(c.topic, c.body, { qos: 1 }, (err) => {
      unacked--;
      if (err) failure ??= new Error(`publish on ${c.topic.slice(0, 120)} failed: ${err.message}`);
      monitor.progress.notify();
    });
  }
  while (!failure && unacked > 0) await withTimeout(monitor.progress.next(), 60_000, `the last ${unacked} PUBACKs`);
  if (failure) throw failure;
  client.off('close', onClose);
  const replies = (): Received[] => monitor.received.filter(isReply);
  // Odd jobs topics may or may not be answered: wait for the replies that must come.
  const due = (): number => replies().filter((r) => pending.has(r.topic.replace(/\/(accepted|rejected)$/, ''))).length;
  while (due() < expectedReplies) await withTimeout(monitor.progress.next(), 60_000, `the last ${expectedReplies - due()} of ${expectedReplies} replies (${unanswered().slice(0, 3).join(' | ')})`);
  return replies();
}

/** Checks the replies against the cases; returns the problems found. */
function judge(cases: MqttCase[], replies: Received[]): string[] {
  const problems: string[] = [];
  const byRequest = new Map<string, MqttCase[]>();
  for (const c of cases) byRequest.set(c.topic, [...(byRequest.get(c.topic) ?? []), c]);
  const got = new Map<string, Received[]>();
  for (const r of replies) {
    const request = r.topic.replace(/\/(accepted|rejected)$/, '');
    if (!byRequest.has(request) || request === r.topic) {
      problems.push(`unexpected message on ${r.topic}: ${r.raw.toString('utf8').slice(0, 160)}`);
      continue;
    }
    got.set(request, [...(got.get(request) ?? []), r]);
  }
  for (const [topic, list] of byRequest) {
    const answers = got.get(topic) ?? [];
    const wanted = list.filter((c) => c.expect.kind === 'reply').length;
    const mayTopic = list.some((c) => c.expect.kind === 'invalid-topic');
    if (wanted > 0 || !mayTopic) {
      if (answers.length !== wanted) problems.push(`${topic} (${list[0]!.family}): ${answers.length} replies for ${wanted} requests that expect one`);
    } else if (answers.length > list.length) problems.push(`${topic} (${list[0]!.family}): ${answers.length} replies for ${list.length} messages`);
    for (const a of answers) {
      let body: { code?: unknown; message?: unknown; clientToken?: unknown; timestamp?: unknown };
      try {
        body = JSON.parse(a.raw.toString('utf8'));
      } catch {
        problems.push(`${a.topic}: the reply is not JSON`);
        continue;
      }
      const accepted = a.topic.endsWith('/accepted');
      // A reply echoing a clientToken belongs to that request; the others to any request without one (union).
      const byToken = list.find((c) => c.expect.kind === 'reply' && c.expect.token !== undefined && c.expect.token === body.clientToken);
      const anonymous = list.filter((c) => c.expect.kind === 'invalid-topic' || (c.expect.kind === 'reply' && c.expect.token === undefined));
      const mine = byToken ?? anonymous[0];
      if (!mine) {
        problems.push(`${a.topic}: a reply that matches no request (clientToken ${JSON.stringify(body.clientToken)}): ${a.raw.toString('utf8').slice(0, 200)} ← ${list.map((c) => c.body.toString('utf8').slice(0, 100)).join(' | ')}`);
        continue;
      }
      const e: MqttCase['expect'] = byToken || mine.expect.kind === 'invalid-topic'
        ? mine.expect
        : { kind: 'reply', accepted: anonymous.some((c) => c.expect.kind === 'reply' && c.expect.accepted), codes: [...new Set(anonymous.flatMap((c) => (c.expect.kind === 'reply' ? c.expect.codes : [])))] };
      if (typeof body.timestamp !== 'number') problems.push(`${a.topic}: no timestamp`);
      if (e.kind === 'invalid-topic') {
        if (accepted || body.code !== 'InvalidTopic') problems.push(`${a.topic} (${mine.family}): ${accepted ? 'accepted' : String(body.code)} where only InvalidTopic may come`);
      } else if (e.kind === 'reply') {
        if (accepted && !e.accepted) problems.push(`${a.topic} (${mine.family}): accepted although it must be refused: ${mine.body.toString('utf8').slice(0, 160)}`);
        if (!accepted && !e.codes.includes(String(body.code))) problems.push(`${a.topic} (${mine.family}): ${String(body.code)} "${String(body.message).slice(0, 100)}", expected ${e.accepted ? 'accepted or ' : ''}${e.codes.join('/')} for ${mine.body.toString('utf8').slice(0, 120)}`);
        if (!accepted && (typeof body.message !== 'string' || body.message === '')) problems.push(`${a.topic}: a rejection without a message`);
      }
    }
  }
  return problems;
}

async function startMonitor(url: string): Promise<{ client: MqttClient; received: Received[]; progress: { next(): Promise<void>; notify(): void } }> {
  let waiters: Array<() => void> = [];
  const progress = {
    next: () => new Promise<void>((resolve) => waiters.push(resolve)),
    notify: () => {
      const w = waiters;
      waiters = [];
      for (const fn of w) fn();
    },
  };
  const client = await mqtt.connectAsync(url, { clientId: uniqueId('mqtt-fuzz-monitor'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
  const received: Received[] = [];
  client.on('message', (topic, raw) => {
    received.push({ topic, raw });
    progress.notify();
  });
  await client.subscribeAsync(Object.fromEntries(REPLY_FILTERS.map((f) => [f, { qos: 1 as const }])));
  return { client, received, progress };
}

const { skip } = realServers(['postgres', 'mosquitto']);

describe('device → server MQTT topics under hostile input (PostgreSQL + Mosquitto)', { skip, timeout: 300_000 }, () => {
  let env: TestEnv;
  const clients: MqttClient[] = [];
  before(async () => {
    env = await startTestSwitchyard('postgres', { brokers: 2, env: NO_LIMITS });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await env?.stop();
  });

  it('answers ≥ 10,000 malformed jobs, status and ack messages as the protocol says and changes no row', async () => {
    const started = Date.now();
    const [broker, other] = env.brokers;
    const devices = await fuzzDevices(env, 6, 'mfz');
    const sentinel = (await fuzzDevices(env, 1, 'mfz-sentinel'))[0]!;
    // A real broker-change command for devices[0]: acks that are not valid must not touch its migration.
    const put = await env.api('PUT', `/api/v1/devices/${devices[0]!.uuid}/broker`, { brokerId: other!.id, channel: 'command' });
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const migration = await withTimeout(
      (async () => {
        for (;;) {
          const m = (await env.api('GET', `/api/v1/migrations/${put.body.migration.id}`)).body;
          if (m.status === 'notified' && m.commandId) return m;
          await new Promise((r) => setTimeout(r, 50));
        }
      })(),
      10_000,
      'the command to be sent',
    );
    const ctx: MqttFuzzContext = { devices, sentinel: { uuid: sentinel.uuid, jobId: sentinel.queued }, brokerId: broker!.id, otherBrokerId: other!.id, commandId: migration.commandId };

    const cases = [...jobsCases(ctx, 6_500, SEED), ...statusCases(ctx, 2_000, SEED + 1), ...ackCases(ctx, 2_000, SEED + 2), ...oddTopicCases(ctx, 600, SEED + 3)];
    // Interleave the kinds deterministically.
    const order = cases.map((c, i) => ({ c, k: (i * 2_654_435_761) % 4_294_967_296 })).sort((a, b) => a.k - b.k).map((e) => e.c);
    assert.ok(order.length >= 10_000, `at least 10,000 messages (${order.length})`);
    await outboxSettled(env);
    const tablesBefore = await dumpTables(env);

    const url = `mqtt://${broker!.host}:${broker!.port}`;
    const monitor = await startMonitor(url);
    clients.push(monitor.client);
    const publisher = await mqtt.connectAsync(url, { clientId: uniqueId('mqtt-fuzz'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(publisher);
    const replies = await run(publisher, monitor, order, { window: 64, perDevice: 12 });

    // Topics Mosquitto itself refuses (wildcards, NUL): it disconnects the publisher; the server never sees them.
    let refused = 0;
    for (const topic of [`iot/device/${devices[0]!.uuid}/jobs/+/update`, `iot/device/+/status`, `iot/device/${devices[0]!.uuid}/command/broker-change/#`, `iot/device/${devices[0]!.uuid}\u0000/status`]) {
      const hostile = await mqtt.connectAsync(url, { clientId: uniqueId('mqtt-fuzz-hostile'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
      clients.push(hostile);
      hostile.on('error', () => undefined); // the broker closing the socket is the expected outcome here
      const closed = onceEvent(hostile, 'close', { timeoutMs: 10_000, message: `Mosquitto to close a client that published on ${JSON.stringify(topic)}` });
      hostile.publish(topic, '{"state":"online"}', { qos: 1 });
      await closed;
      refused++;
    }

    // Barrier: one more jobs request per device is answered after all of its earlier ones; status and acks are
    // handled as they arrive, so a moment lets the last of them finish.
    await env.sy.shadows.drain();
    for (const d of [...devices, sentinel]) {
      const reply = new Promise<void>((resolve) => monitor.client.on('message', (t) => t === `iot/device/${d.uuid}/jobs/get/accepted` && resolve()));
      await publisher.publishAsync(`iot/device/${d.uuid}/jobs/get`, '{"clientToken":"barrier"}', { qos: 1 });
      await withTimeout(reply, 10_000, `the barrier of ${d.uuid}`);
    }
    await new Promise((r) => setTimeout(r, 500));

    const problems = judge(order, replies);
    if (problems.length > 0 && process.env.SWITCHYARD_FUZZ_VERBOSE === '1') process.stderr.write(problems.map((p) => `# ${p}\n`).join(''));
    assert.deepEqual(problems.slice(0, 25), [], `${problems.length} problem(s); seed ${SEED}`);
    const after = await dumpTables(env);
    for (const [table, dump] of tablesBefore) assert.equal(after.get(table), dump, `contents of ${table} (byte for byte)`);
    assert.equal((await env.api('GET', '/healthz', undefined, { token: null })).status, 200);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');

    const count = (k: string) => order.filter((c) => c.family.startsWith(k)).length;
    process.stderr.write(
      `# mqtt-fuzz (postgres): ${order.length + refused} messages (jobs ${count('jobs')}, status ${count('status')}, ack ${count('ack')}, odd topics ${count('odd')}, ${refused} refused by Mosquitto), ${replies.length} replies, in ${((Date.now() - started) / 1000).toFixed(1)} s, seed ${SEED}\n`,
    );
  });
});

describe('device → server MQTT topics under hostile input (PGlite + Aedes)', { timeout: 300_000 }, () => {
  let env: TestEnv;
  const clients: MqttClient[] = [];
  before(async () => {
    env = await startTestSwitchyard('embedded', { brokers: 2, env: NO_LIMITS });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await env?.stop();
  });

  // Aedes closes a device's connection when it publishes on a topic that is not its own request topic, so every
  // message here goes on a valid request topic of the publishing device; only the payload (and job id) is hostile.
  it('answers 1,500 malformed jobs, status and ack messages of a device on its own topics and changes no row', async () => {
    const started = Date.now();
    const [device] = await fuzzDevices(env, 1, 'mfz-e');
    const sentinel = (await fuzzDevices(env, 1, 'mfz-e-sentinel'))[0]!;
    const ctx: MqttFuzzContext = { devices: [device!], sentinel: { uuid: sentinel.uuid, jobId: sentinel.queued }, brokerId: env.brokers[0]!.id, otherBrokerId: env.brokers[1]!.id, commandId: `no-command-${SEED}` };
    const own = (c: MqttCase): boolean => c.topic.startsWith(`iot/device/${device!.uuid}/`) || c.topic.startsWith(`$aws/things/${device!.uuid}/`);
    const cases = [...jobsCases(ctx, 900, SEED + 20), ...statusCases(ctx, 300, SEED + 21), ...ackCases(ctx, 300, SEED + 22)].filter(own);
    await outboxSettled(env);
    const tablesBefore = await dumpTables(env);

    let waiters: Array<() => void> = [];
    const progress = { next: () => new Promise<void>((resolve) => waiters.push(resolve)), notify: () => { const w = waiters; waiters = []; for (const fn of w) fn(); } };
    const b = env.brokers[0]!;
    const client = await mqtt.connectAsync(`mqtt://${b.host}:${b.port}`, { clientId: device!.uuid, username: device!.uuid, password: device!.token, clean: true, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(client);
    const received: Received[] = [];
    client.on('message', (topic, raw) => {
      received.push({ topic, raw });
      progress.notify();
    });
    await client.subscribeAsync(Object.fromEntries([`iot/device/${device!.uuid}/jobs/+/+`, `iot/device/${device!.uuid}/jobs/+/+/+`, `$aws/things/${device!.uuid}/jobs/+/+`, `$aws/things/${device!.uuid}/jobs/+/+/+`].map((f) => [f, { qos: 1 as const }])));
    const replies = await run(client, { received, progress }, cases, { window: 24, perDevice: 12 });
    const problems = judge(cases, replies);
    assert.deepEqual(problems.slice(0, 25), [], `${problems.length} problem(s); seed ${SEED + 20}`);
    await new Promise((r) => setTimeout(r, 300));
    const after = await dumpTables(env);
    for (const [table, dump] of tablesBefore) assert.equal(after.get(table), dump, `contents of ${table} (byte for byte)`);
    assert.equal(client.connected, true, 'Aedes kept the device connected');
    assert.equal((await env.api('GET', '/healthz', undefined, { token: null })).status, 200);
    process.stderr.write(`# mqtt-fuzz (embedded): ${cases.length} messages, ${replies.length} replies, in ${((Date.now() - started) / 1000).toFixed(1)} s, seed ${SEED + 20}\n`);
  });
});
