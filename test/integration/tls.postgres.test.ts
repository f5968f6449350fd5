/**
 * `mqtts` brokers (issue 5, "Transport"): the server and the agent verify a broker's certificate, host name
 * included, and refuse a mismatch with a clear error; an agent that cannot verify the broker it is told to move
 * to reports the TLS failure as the move's error and stays where it is.
 *
 * PostgreSQL + a plain Mosquitto A + a Mosquitto B with two TLS listeners: one whose certificate (from a
 * throwaway CA) names `localhost` and 127.0.0.1, one whose certificate names only `broker.example.test`.
 * Everything listens on 127.0.0.1 only.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createAgent, type Agent } from '../../packages/agent/src/agent.ts';
import { testTempRoot } from '../../scripts/test-servers.mjs';
import { startMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { createTestPki, opensslAvailable, type TestPki } from '../helpers/pki.ts';
import { freePort } from '../helpers/ports.ts';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const real = realServers(['postgres', 'mosquitto']);
const skip = real.skip || (opensslAvailable() ? false : 'openssl not found (install openssl)');

const UNTRUSTED_BY_RECORD = /^TLS certificate verify failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)[^)]*\): the broker's certificate is not signed by the broker record's caCert$/;
const AGENT_UNTRUSTED = /^cannot connect to mqtts:\/\/localhost:\d+: TLS certificate verify failed \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)[^)]*\): the broker's certificate is not signed by a CA this agent trusts \(add its CA to --ca-file\)$/;

describe('TLS to mqtts brokers (PostgreSQL + Mosquitto)', { skip, timeout: 180_000 }, () => {
  let env: TestEnv;
  let pki: TestPki;
  let other: { caFile: string; caPem: string };
  let mosquittoB: TestMosquitto;
  /** B's listener whose certificate names only broker.example.test. */
  let wrongNamePort = 0;
  /** Broker record of B's good listener: mqtts://localhost:<tlsPort> with the test CA. */
  let brokerB: { id: number; port: number };
  let stateRoot = '';
  const agents: Agent[] = [];

  before(async () => {
    pki = await createTestPki();
    other = await pki.otherCa();
    const wrongName = await pki.serverFor(['broker.example.test']);
    wrongNamePort = await freePort();
    env = await startTestSwitchyard('postgres', { brokers: 1 });
    mosquittoB = await startMosquitto({
      tls: { caFile: pki.caFile, certFile: pki.server.cert, keyFile: pki.server.key },
      extraConfig: [`listener ${wrongNamePort} 127.0.0.1`, `cafile ${pki.caFile}`, `certfile ${wrongName.cert}`, `keyfile ${wrongName.key}`, 'require_certificate false'].join('\n'),
    });
    const res = await env.api('POST', '/api/v1/brokers', { name: 'b-tls', protocol: 'mqtts', host: 'localhost', port: mosquittoB.tlsPort, caCert: pki.caPem });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    brokerB = { id: res.body.id, port: mosquittoB.tlsPort! };
    await env.sy.pool.refresh(); // the API's own refresh runs after its answer
    await env.sy.pool.waitConnected(brokerB.id, 10_000);
    stateRoot = await mkdtemp(join(testTempRoot(), 'sy-tls-agents-'));
  });

  after(async () => {
    await Promise.all(agents.map((a) => a.stop().catch(() => undefined)));
    await env?.stop();
    await mosquittoB?.stop();
    await pki?.remove();
    if (stateRoot) await rm(stateRoot, { recursive: true, force: true });
  });

  /** A broker record; answers its id. */
  async function register(body: Record<string, unknown>): Promise<number> {
    const res = await env.api('POST', '/api/v1/brokers', { name: `tls-${Math.random().toString(36).slice(2, 10)}`, protocol: 'mqtts', ...body });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    await env.sy.pool.refresh(); // the API's own refresh runs after its answer
    return res.body.id as number;
  }

  /** Waits until GET /brokers/:id shows a connection error, and answers it. */
  async function connectionError(id: number): Promise<string> {
    return waitFor(
      async () => {
        const got = await env.api('GET', `/api/v1/brokers/${id}`);
        assert.equal(got.status, 200);
        return got.body.connection?.connected === false && typeof got.body.connection.lastError === 'string' ? (got.body.connection.lastError as string) : null;
      },
      { timeoutMs: 10_000, message: `a connection error for broker ${id}` },
    );
  }

  /** Takes a broker out of the pool again (a refused broker would keep /readyz at 503 for the next tests). */
  const disable = async (id: number) => assert.equal((await env.api('PATCH', `/api/v1/brokers/${id}`, { status: 'disabled' })).status, 200);

  /** A device on A, run by a real agent (createAgent), connected to A. */
  async function agentOnA(caFile?: string): Promise<{ uuid: string; agent: Agent }> {
    const device = await env.createDevice({ brokerIndex: 0 });
    const agent = createAgent({
      config: {
        apiUrl: env.url,
        deviceUuid: device.uuid,
        deviceToken: device.token,
        stateDir: join(stateRoot, device.uuid),
        heartbeatMs: 0,
        channels: ['shadow'],
        ...(caFile !== undefined ? { caFile } : {}),
      },
    });
    agents.push(agent);
    const connected = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`agent ${device.uuid} did not connect to A within 10 s`)), 10_000);
      agent.once('connected', () => {
        clearTimeout(timer);
        resolve();
      });
    });
    await agent.start();
    await connected;
    assert.equal(agent.state().connectedBrokerId, env.brokers[0]!.id);
    return { uuid: device.uuid, agent };
  }

  async function assign(uuid: string, brokerId: number): Promise<number> {
    const res = await env.api('PUT', `/api/v1/devices/${uuid}/broker`, { brokerId });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.migration.id as number;
  }

  const migration = async (id: number) => (await env.api('GET', `/api/v1/migrations/${id}`)).body;
  const reportedMqtt = async (uuid: string) => (await env.api('GET', `/api/v1/devices/${uuid}/shadows/device-state`)).body?.state?.reported?.mqtt;

  /**
   * The move failed with a TLS reason: the migration row and the device's report say so, the agent is still on
   * A, and a shadow update it publishes now still goes through (A is its only connection).
   */
  async function assertStayedOnA(d: { uuid: string; agent: Agent }, migrationId: number, reason: RegExp, targetId: number): Promise<void> {
    const row = await waitFor(async () => {
      const m = await migration(migrationId);
      return typeof m.error === 'string' ? m : null;
    }, { timeoutMs: 15_000, message: `migration ${migrationId} to carry the device's error` });
    assert.match(row.error, reason);
    assert.notEqual(row.status, 'completed');
    assert.ok(row.attempts >= 1);
    const rep = await waitFor(async () => {
      const r = await reportedMqtt(d.uuid);
      return r?.status === 'error' ? r : null;
    }, { timeoutMs: 10_000, message: 'reported.mqtt.status "error"' });
    assert.equal(rep.brokerId, env.brokers[0]!.id);
    assert.equal(rep.targetBrokerId, targetId);
    assert.match(rep.error, reason);

    assert.equal(d.agent.state().connectedBrokerId, env.brokers[0]!.id);
    const marker = `still-on-a-${Date.now()}`;
    await d.agent.publish(`iot/device/${d.uuid}/shadow/name/app/update`, JSON.stringify({ state: { reported: { marker } } }), { qos: 1 });
    await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/app`)).body?.state?.reported?.marker === marker, {
      timeoutMs: 10_000,
      message: 'the shadow update published through A',
    });
  }

  describe('server', () => {
    it('connects over mqtts with the CA of the broker record, by host name and by IP address (IP SAN)', async () => {
      const byName = await env.api('GET', `/api/v1/brokers/${brokerB.id}`);
      assert.equal(byName.status, 200);
      assert.equal(byName.body.url, `mqtts://localhost:${brokerB.port}`);
      assert.equal(byName.body.hasCaCert, true);
      assert.deepEqual(byName.body.connection, { connected: true, owner: true });

      const byIp = await register({ host: '127.0.0.1', port: brokerB.port, caCert: pki.caPem });
      await env.sy.pool.waitConnected(byIp, 10_000);
      assert.equal((await env.api('GET', `/api/v1/brokers/${byIp}`)).body.connection.connected, true);
      assert.equal((await env.api('DELETE', `/api/v1/brokers/${byIp}`)).status, 204);
    });

    it('refuses a broker certificate that the record’s CA did not sign, and says why in GET /brokers/:id and /readyz', async () => {
      const id = await register({ host: 'localhost', port: brokerB.port, caCert: other.caPem });
      try {
        const error = await connectionError(id);
        assert.match(error, UNTRUSTED_BY_RECORD);
        const ready = await env.api('GET', '/readyz');
        assert.equal(ready.status, 503);
        const check = (ready.body.brokers as Array<{ brokerId: number; error?: string }>).find((b) => b.brokerId === id);
        assert.match(check?.error ?? '', UNTRUSTED_BY_RECORD);
        assert.equal(env.sy.pool.isConnected(id), false);
      } finally {
        await disable(id);
      }
    });

    it('refuses a certificate that does not name the record’s host (host name verification)', async () => {
      const id = await register({ host: 'localhost', port: wrongNamePort, caCert: pki.caPem });
      try {
        const error = await connectionError(id);
        assert.match(error, /^TLS host name check failed \(Hostname\/IP does not match certificate's altnames: Host: localhost\. is not in the cert's altnames: DNS:broker\.example\.test\): the broker record's host must be a name or IP address in the certificate's subjectAltName$/);
      } finally {
        await disable(id);
      }
    });

    it("verifies against Node's root store when the record has no caCert (so a private CA is refused)", async () => {
      const id = await register({ host: 'localhost', port: brokerB.port });
      try {
        assert.match(await connectionError(id), /^TLS certificate verify failed \([A-Z_]+: .*\): the broker's certificate is not signed by a CA in Node's root store; set the broker record's caCert/);
      } finally {
        await disable(id);
      }
    });

    it('refuses a caCert that is not a usable certificate, or on a plain broker, with 400 naming body.caCert, and changes nothing', async () => {
      const key = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n';
      const cases: Array<[Record<string, unknown>, RegExp]> = [
        [{ caCert: `${pki.caPem}${key}` }, /^body\.caCert block #2 is a private key \(PRIVATE KEY\); caCert holds certificates only/],
        [{ caCert: '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n' }, /^body\.caCert certificate #1 cannot be parsed/],
        [{ caCert: 'no pem here' }, /^body\.caCert is invalid: expected a PEM CA certificate/],
        [{ protocol: 'mqtt', caCert: pki.caPem }, /^body\.caCert applies to mqtts and wss brokers only \(this broker's protocol is mqtt\)/],
      ];
      const before = (await env.api('GET', '/api/v1/brokers')).body.total as number;
      for (const [change, message] of cases) {
        const res = await env.api('POST', '/api/v1/brokers', { name: `bad-ca-${Math.random().toString(36).slice(2, 8)}`, protocol: 'mqtts', host: 'localhost', port: brokerB.port, ...change });
        assert.equal(res.status, 400, JSON.stringify(res.body));
        assert.equal(res.body.code, 'VALIDATION_FAILED');
        assert.match(res.body.message, message);
        assert.equal(res.body.fields[0].field, 'body.caCert');
        assert.ok(!JSON.stringify(res.body).includes('MIIEvQIBADAN'), 'the key is never echoed');
      }
      assert.equal((await env.api('GET', '/api/v1/brokers')).body.total, before);

      const patched = await env.api('PATCH', `/api/v1/brokers/${brokerB.id}`, { caCert: other.caPem.replace(/\n[A-Za-z0-9+/]{16}/, '\n!!!!!!!!!!!!!!!!') });
      assert.equal(patched.status, 400, JSON.stringify(patched.body));
      assert.match(patched.body.message, /^body\.caCert certificate #1 cannot be parsed/);
      const plain = await env.api('PATCH', `/api/v1/brokers/${env.brokers[0]!.id}`, { caCert: pki.caPem });
      assert.match(plain.body.message, /^body\.caCert applies to mqtts and wss brokers only/);
      const b = (await env.api('GET', `/api/v1/brokers/${brokerB.id}`)).body;
      assert.equal(b.hasCaCert, true);
      assert.equal(b.connection.connected, true, 'the refused PATCH did not touch the connection');
      assert.equal((await env.api('GET', `/api/v1/brokers/${env.brokers[0]!.id}`)).body.hasCaCert, false);
    });
  });

  describe('agent', () => {
    it('moves to the mqtts broker when it trusts the CA (--ca-file)', async () => {
      const d = await agentOnA(pki.caFile);
      const id = await assign(d.uuid, brokerB.id);
      const row = await waitFor(async () => {
        const m = await migration(id);
        return m.status === 'completed' ? m : null;
      }, { timeoutMs: 20_000, message: `migration ${id} completed` });
      assert.equal(row.toBrokerId, brokerB.id);
      assert.equal(d.agent.state().connectedBrokerId, brokerB.id);
      const rep = await reportedMqtt(d.uuid);
      assert.equal(rep.status, 'connected');
      assert.equal(rep.broker, `mqtts://localhost:${brokerB.port}`);
    });

    it('stays on its broker and reports the TLS failure as the move’s error, without the CA or with another CA', async () => {
      const [without, wrongCa] = await Promise.all([agentOnA(), agentOnA(other.caFile)]);
      const [m1, m2] = await Promise.all([assign(without.uuid, brokerB.id), assign(wrongCa.uuid, brokerB.id)]);
      await Promise.all([assertStayedOnA(without, m1, AGENT_UNTRUSTED, brokerB.id), assertStayedOnA(wrongCa, m2, AGENT_UNTRUSTED, brokerB.id)]);
    });

    it('refuses a broker whose certificate does not name the host it dials, and stays', async () => {
      const id = await register({ host: 'localhost', port: wrongNamePort, caCert: pki.caPem });
      try {
        const d = await agentOnA(pki.caFile);
        const m = await assign(d.uuid, id);
        await assertStayedOnA(
          d,
          m,
          /^cannot connect to mqtts:\/\/localhost:\d+: TLS host name check failed \(Hostname\/IP does not match certificate's altnames: Host: localhost\. is not in the cert's altnames: DNS:broker\.example\.test\): the broker's host is not a name or IP address in its certificate$/,
          id,
        );
      } finally {
        await disable(id).catch(() => undefined); // a device is assigned to it: disabling is allowed, deleting is not
      }
    });
  });
});
