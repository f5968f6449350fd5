/**
 * Regression tests for the server bugs that http-fuzz.test.ts and mqtt-fuzz.test.ts found (issue 5), each as the
 * smallest request that showed it (PostgreSQL + Mosquitto).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { nestedJson } from '../helpers/fuzz-values.ts';
import { createHttpClient, rawRequestBytes } from '../helpers/raw-http.ts';
import { realServers } from '../helpers/real.ts';
import { TEST_ADMIN_TOKEN, startTestSwitchyard, uniqueId, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';

const { skip } = realServers(['postgres', 'mosquitto']);

describe('hostile input that once broke the server (PostgreSQL + Mosquitto)', { skip, timeout: 120_000 }, () => {
  let env: TestEnv;
  let http: ReturnType<typeof createHttpClient>;
  const lines: string[] = [];
  before(async () => {
    env = await startTestSwitchyard('postgres', { brokers: 1, captureLog: { lines, level: 'warn' } });
    http = createHttpClient(Number(new URL(env.url).port), { timeoutMs: 5000 });
  });
  after(async () => {
    http?.close();
    await env?.stop();
  });
  const admin = { authorization: `Bearer ${TEST_ADMIN_TOKEN}` };
  const json = (a: { body: Buffer }) => JSON.parse(a.body.toString('utf8'));

  it('refuses a path or query integer that coerces to Infinity with 400 (was 500 from PostgreSQL)', async () => {
    for (const path of ['/api/v1/brokers/Infinity', '/api/v1/brokers/1e309', '/api/v1/devices?limit=1e309', '/api/v1/devices?offset=-1e999', '/api/v1/jobs?limit=Infinity']) {
      const a = await http.sendHttp({ method: 'GET', path, headers: admin });
      assert.equal(a.status, 400, `${path}: ${a.body.toString()}`);
      assert.equal(json(a).code, 'VALIDATION_FAILED');
      assert.match(json(a).message, /must be an integer/);
    }
  });

  it('refuses a JSON body that is not UTF-8 with 415 and creates nothing (was stored with U+FFFD)', async () => {
    const name = uniqueId('tok');
    const body = Buffer.concat([Buffer.from(`{"name":"${name}`), Buffer.from([0xff, 0xfe]), Buffer.from('","scope":"viewer"}')]);
    const a = await http.sendHttp({ method: 'POST', path: '/api/v1/tokens', headers: { ...admin, 'content-type': 'application/json' }, body });
    assert.equal(a.status, 415, a.body.toString());
    assert.equal(json(a).code, 'UNSUPPORTED_MEDIA_TYPE');
    const list = await env.api('GET', '/api/v1/tokens?limit=500');
    assert.ok(!JSON.stringify(list.body).includes(name), 'no token was created');
  });

  it('refuses NUL, unpaired surrogates and nesting deeper than 64 in a JSON body with 400 (were 500)', async () => {
    const d = await env.createDevice();
    const jobs = `/api/v1/devices/${d.uuid}/jobs`;
    for (const [raw, what] of [
      ['{"jobType":"x","jobData":{"a":"b\\u0000"}}', /body\.jobData\.a holds a NUL character/],
      ['{"jobType":"x","jobData":{"a":["\\ud800"]}}', /body\.jobData\.a\[0\] holds a NUL character or an unpaired UTF-16 surrogate/],
      ['{"jobType":"x","jobData":{"k\\udfff":1}}', /body\.jobData has a key with/],
      [`{"jobType":"x","jobData":{"d":${nestedJson(6000, true)}}}`, /nested more than 64 levels/],
      [`{"jobType":"x","jobData":{"d":${nestedJson(6000, false)}}}`, /nested more than 64 levels/],
    ] as const) {
      const res = await env.api('POST', jobs, undefined, { raw });
      assert.equal(res.status, 400, JSON.stringify(res.body).slice(0, 200));
      assert.equal(res.body.code, 'VALIDATION_FAILED');
      assert.match(res.body.message, what);
    }
    const ok = await env.api('POST', jobs, undefined, { raw: `{"jobType":"x","jobData":{"d":${nestedJson(40, true)},"s":"a\\ud83d\\ude42b"}}` });
    assert.equal(ok.status, 201, 'nesting within the limit and a surrogate pair are fine');
    assert.equal((await env.api('GET', `/api/v1/jobs?deviceUuid=${d.uuid}`)).body.total, 1);
    // The device's own statusDetails over HTTP too (the service stored them: PostgreSQL refused, 500).
    const next = await env.api('PUT', `${jobs}/$next`, undefined, { raw: '{"statusDetails":{"a":"\\ud800"}}', token: d.token });
    assert.equal(next.status, 400);
    assert.equal((await env.api('GET', `/api/v1/jobs/${ok.body.jobId}`)).body.status, 'QUEUED');
  });

  it('answers HEAD /api/v1/events with the head alone (the stream never answered a HEAD)', async () => {
    const a = await http.sendRaw(rawRequestBytes({ method: 'HEAD', path: '/api/v1/events', headers: admin }));
    assert.equal(a.status, 200, a.failure);
    assert.match(a.headers['content-type'] ?? '', /text\/event-stream/);
  });

  it('answers what node’s parser refuses with a catalogued body (was Fastify’s own shape)', async () => {
    const big = await http.sendHttp({ method: 'GET', path: '/healthz', headers: { 'x-padding': 'p'.repeat(20_000) } });
    assert.equal(big.status, 431);
    assert.deepEqual(json(big), { error: 'Request Header Fields Too Large', message: 'The request line and headers are larger than 16 KiB (a URL that long is refused too)', code: 'HEADERS_TOO_LARGE' });
    const bad = await http.sendRaw(Buffer.from('GET /api/v1/devices/a\u0000b HTTP/1.1\r\nHost: x\r\n\r\n', 'latin1'));
    assert.equal(bad.status, 400);
    assert.equal(json(bad).code, 'VALIDATION_FAILED');
    const head = await http.sendRaw(Buffer.from(`HEAD /${'x'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1'));
    assert.equal(head.status, 431);
  });

  describe('jobs over MQTT', () => {
    let d: { uuid: string; token: string };
    let client: DeviceClient;
    let jobId: string;
    before(async () => {
      d = await env.createDevice();
      client = await env.connectDevice(d);
      await client.subscribe([`iot/device/${d.uuid}/jobs/+/+`, `iot/device/${d.uuid}/jobs/+/+/+`]);
      jobId = (await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'reboot', jobData: {} })).body.jobId;
    });

    it('refuses __proto__, constructor and toString as unknown fields (they were taken for known ones)', async () => {
      for (const key of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
        const clientToken = `p-${key}`;
        const reply = client.waitFor((m) => m.topic.startsWith(`iot/device/${d.uuid}/jobs/get/`) && m.payload.clientToken === clientToken, 5000, key);
        await client.publish(`iot/device/${d.uuid}/jobs/get`, `{"clientToken":"${clientToken}","${key}":{"polluted":true}}`);
        const r = await reply;
        assert.equal(r.topic, `iot/device/${d.uuid}/jobs/get/rejected`, key);
        assert.equal(r.payload.code, 'InvalidRequest');
        assert.match(r.payload.message, /unknown field/);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    });

    it('refuses statusDetails with an unpaired surrogate and leaves the job QUEUED (was InternalError)', async () => {
      const reply = client.waitFor((m) => m.topic.startsWith(`iot/device/${d.uuid}/jobs/start-next/`) && m.payload.clientToken === 'lone', 5000, 'start-next reply');
      await client.publish(`iot/device/${d.uuid}/jobs/start-next`, '{"clientToken":"lone","statusDetails":{"k":"a\\ud800"}}');
      const r = await reply;
      assert.equal(r.topic, `iot/device/${d.uuid}/jobs/start-next/rejected`);
      assert.equal(r.payload.code, 'InvalidRequest');
      assert.equal((await env.api('GET', `/api/v1/jobs/${jobId}`)).body.status, 'QUEUED');
    });
  });

  it('ignores a command ack whose command id holds a NUL without a database error (was a failed query and a warning each)', async () => {
    const d = await env.createDevice();
    const client = await env.connectDevice(d);
    const before = lines.length;
    for (const id of ['a\\u0000b', '\\u0000', 'x\\ud800']) await client.publish(`iot/device/${d.uuid}/command/broker-change/ack`, `{"commandId":"${id}","status":"received"}`);
    // A well-formed ack after them is handled (acks of a device are handled in order).
    await client.publish(`iot/device/${d.uuid}/command/broker-change/ack`, '{"commandId":"none","status":"received"}');
    await new Promise((r) => setTimeout(r, 300));
    const warnings = lines.slice(before).filter((l) => l.includes('could not record a command ack'));
    assert.deepEqual(warnings, []);
  });
});
