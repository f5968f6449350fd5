/**
 * The admin API contract, run against every database implementation (PGlite and PostgreSQL): authentication,
 * brokers, devices, the error shape, OpenAPI and readiness. One database per file; every case creates its
 * own uniquely named data, so cases do not depend on each other or on their order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { FastifyPluginAsync } from 'fastify';
import { hashToken } from '../../src/auth/tokens.ts';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/migrate.ts';
import { silentLogger } from '../../src/log.ts';
import { FAKE_CA_PEM, makeBroker, makeDevice, uniqueSuffix } from '../../../../test/helpers/builders.ts';
import { assertError, createHarness, type Harness } from './harness.ts';

export interface SuiteTarget {
  open(): Promise<Db>;
  close(db: Db): Promise<void>;
  skip?: string | false;
}

/** A route a plugin adds under /api/v1 (like the lead's shadow routes): device-accessible, plus one that fails. */
const testPlugin: FastifyPluginAsync = async (app) => {
  app.get('/devices/:uuid/probe', { config: { device: true }, schema: { params: { type: 'object', properties: { uuid: { type: 'string' } } } } }, async (request) => ({
    principal: request.principal,
  }));
  app.get('/explode', async () => {
    throw new Error('database said: password=hunter2-sauce at /srv/secret/path');
  });
};

export function apiSuite(label: string, target: SuiteTarget): void {
  describe(`HTTP API (${label})`, { skip: target.skip ?? false }, () => {
    let db: Db;
    let h: Harness;
    /** Secrets used by the cases: none may ever appear in an answer or a log line. */
    const secrets: string[] = [];

    const createBroker = async (overrides: Parameters<typeof makeBroker>[0] = {}) => {
      const res = await h.call('POST', '/api/v1/brokers', { body: makeBroker(overrides) });
      assert.equal(res.statusCode, 201, res.body);
      return res.json() as { id: number; name: string } & Record<string, unknown>;
    };
    const createDevice = async (overrides: Parameters<typeof makeDevice>[0] = {}) => {
      const res = await h.call('POST', '/api/v1/devices', { body: makeDevice(overrides) });
      assert.equal(res.statusCode, 201, res.body);
      const body = res.json() as { uuid: string; token: string } & Record<string, unknown>;
      secrets.push(body.token);
      return body;
    };

    before(async () => {
      db = await target.open();
      await migrate(db, silentLogger());
      h = await createHarness(db, { plugins: [{ plugin: testPlugin }] });
    });

    after(async () => {
      await h?.app.close();
      if (db) await target.close(db);
    });

    describe('authentication', () => {
      it('answers 401 without an Authorization header, with WWW-Authenticate', async () => {
        const res = await h.call('GET', '/api/v1/brokers', { token: null });
        assertError(res, 401, 'UNAUTHORIZED', 'Missing Authorization header');
        assert.equal(res.headers['www-authenticate'], 'Bearer');
      });

      it('answers 401 for a wrong token and for another scheme', async () => {
        assertError(await h.call('GET', '/api/v1/brokers', { token: 'sya_not-the-token-at-all' }), 401, 'UNAUTHORIZED', 'not valid');
        assertError(await h.call('GET', '/api/v1/devices', { token: null, headers: { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` } }), 401, 'UNAUTHORIZED', 'Bearer');
        assertError(await h.call('GET', '/api/v1/devices', { token: null, headers: { authorization: 'Bearer' } }), 401, 'UNAUTHORIZED');
      });

      it('checks the token before the body: an unauthenticated bad body is 401, not 400', async () => {
        const res = await h.call('POST', '/api/v1/brokers', { token: null, body: { nonsense: true } });
        assertError(res, 401, 'UNAUTHORIZED');
      });

      it('accepts the scheme case-insensitively', async () => {
        const res = await h.call('GET', '/api/v1/brokers', { token: null, headers: { authorization: `bearer ${h.adminToken}` } });
        assert.equal(res.statusCode, 200, res.body);
      });

      it('leaves health and docs public', async () => {
        assert.equal((await h.call('GET', '/healthz', { token: null })).statusCode, 200);
        assert.deepEqual((await h.call('GET', '/healthz', { token: null })).json(), { status: 'ok' });
        assert.equal((await h.call('GET', '/openapi.json', { token: null })).statusCode, 200);
      });
    });

    describe('brokers', () => {
      it('registers a broker and answers it without the password', async () => {
        const password = `pw-${uniqueSuffix()}`;
        secrets.push(password);
        const body = makeBroker({ host: 'mqtt.example.com', port: 8883, protocol: 'mqtts', username: 'switchyard', password, caCert: FAKE_CA_PEM });
        const res = await h.call('POST', '/api/v1/brokers', { body });
        assert.equal(res.statusCode, 201, res.body);
        const broker = res.json();
        assert.equal(res.headers.location, `/api/v1/brokers/${broker.id}`);
        assert.deepEqual(Object.keys(broker).sort(), ['createdAt', 'hasCaCert', 'hasPassword', 'host', 'id', 'name', 'port', 'protocol', 'protocolVersion', 'provisioner', 'status', 'updatedAt', 'url', 'username']);
        assert.equal(broker.name, body.name);
        assert.equal(broker.url, 'mqtts://mqtt.example.com:8883');
        assert.equal(broker.protocolVersion, 4);
        assert.equal(broker.status, 'active');
        assert.equal(broker.provisioner, 'static');
        assert.equal(broker.username, 'switchyard');
        assert.equal(broker.hasPassword, true);
        assert.equal(broker.hasCaCert, true);
        assert.ok(!res.body.includes(password));
        assert.ok(!Number.isNaN(Date.parse(broker.createdAt)));

        // At rest: encrypted, and only the secret box can read it back.
        const row = (await db.query<{ password_enc: string }>('SELECT password_enc FROM mqtt_broker_config WHERE id = $1', [broker.id])).rows[0];
        assert.ok(row && !row.password_enc.includes(password));
        assert.equal(h.secretBox.decrypt(row.password_enc), password);

        for (const url of [`/api/v1/brokers/${broker.id}`, '/api/v1/brokers']) {
          const got = await h.call('GET', url);
          assert.equal(got.statusCode, 200);
          assert.ok(!got.body.includes(password), `${url} leaks the password`);
          assert.ok(!got.body.includes('password_enc') && !got.body.includes('"password"'));
        }
        const list = (await h.call('GET', '/api/v1/brokers')).json();
        assert.equal(list.total, list.items.length);
        assert.ok(list.items.some((b: { id: number }) => b.id === broker.id));
      });

      it('writes IPv6 hosts in brackets in the url and takes optional fields', async () => {
        const broker = await createBroker({ host: '::1', port: 9001, protocol: 'ws', protocolVersion: 5, provisioner: 'mosquitto-dynsec', status: 'draining' });
        assert.equal(broker.url, 'ws://[::1]:9001');
        assert.equal(broker.protocolVersion, 5);
        assert.equal(broker.provisioner, 'mosquitto-dynsec');
        assert.equal(broker.status, 'draining');
        assert.equal(broker.hasPassword, false);
        assert.equal(broker.username, null);
      });

      it('changes fields with PATCH, sets and clears the password, never returning it', async () => {
        const broker = await createBroker();
        const password = `pw-${uniqueSuffix()}`;
        secrets.push(password);
        const res = await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { port: 1999, password, status: 'draining' } });
        assert.equal(res.statusCode, 200, res.body);
        const patched = res.json();
        assert.equal(patched.port, 1999);
        assert.equal(patched.status, 'draining');
        assert.equal(patched.hasPassword, true);
        assert.equal(patched.name, broker.name);
        assert.ok(!res.body.includes(password));
        assert.ok(Date.parse(patched.updatedAt) >= Date.parse(broker.updatedAt as string));

        const cleared = await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { password: null, username: null } });
        assert.equal(cleared.json().hasPassword, false);
        assert.equal(cleared.json().username, null);
      });

      it('calls onChange after each committed change, and not after a refused one', async () => {
        const before = h.changes.count;
        const broker = await createBroker();
        await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { port: 2000 } });
        await h.call('POST', '/api/v1/brokers', { body: makeBroker({ name: broker.name }) }); // 409
        await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { port: 0 } }); // 400
        await h.call('DELETE', `/api/v1/brokers/${broker.id}`);
        assert.equal(h.changes.count - before, 3);
      });

      it('writes an audit row per change, without secrets', async () => {
        const password = `pw-${uniqueSuffix()}`;
        secrets.push(password);
        const broker = await createBroker({ password });
        await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { password: `${password}-2`, host: 'other.example' } });
        await h.call('DELETE', `/api/v1/brokers/${broker.id}`);
        const rows = (
          await db.query<{ actor: string; action: string; details: unknown }>(
            "SELECT actor, action, details FROM audit_log WHERE target_type = 'broker' AND target_id = $1 ORDER BY id",
            [String(broker.id)],
          )
        ).rows;
        assert.deepEqual(rows.map((r) => r.action), ['broker.create', 'broker.update', 'broker.delete']);
        assert.ok(rows.every((r) => r.actor === 'admin'));
        assert.deepEqual((rows[1]?.details as Record<string, unknown>).password, 'set');
        assert.ok(!JSON.stringify(rows).includes(password));
      });

      it('refuses a duplicate name with 409 BROKER_NAME_TAKEN, on create and on rename', async () => {
        const a = await createBroker();
        const b = await createBroker();
        assertError(await h.call('POST', '/api/v1/brokers', { body: makeBroker({ name: a.name }) }), 409, 'BROKER_NAME_TAKEN', a.name);
        assertError(await h.call('PATCH', `/api/v1/brokers/${b.id}`, { body: { name: a.name } }), 409, 'BROKER_NAME_TAKEN');
        // Renaming to its own name is no conflict.
        assert.equal((await h.call('PATCH', `/api/v1/brokers/${a.id}`, { body: { name: a.name } })).statusCode, 200);
      });

      it('answers 404 BROKER_NOT_FOUND for an unknown id', async () => {
        const id = 2_000_000_000;
        assertError(await h.call('GET', `/api/v1/brokers/${id}`), 404, 'BROKER_NOT_FOUND', String(id));
        assertError(await h.call('PATCH', `/api/v1/brokers/${id}`, { body: { port: 1 } }), 404, 'BROKER_NOT_FOUND');
        assertError(await h.call('DELETE', `/api/v1/brokers/${id}`), 404, 'BROKER_NOT_FOUND');
      });

      it('refuses a malformed :id with 400 naming the parameter', async () => {
        assertError(await h.call('GET', '/api/v1/brokers/abc'), 400, 'VALIDATION_FAILED', 'params.id must be an integer');
        assertError(await h.call('GET', '/api/v1/brokers/0'), 400, 'VALIDATION_FAILED', 'params.id must be at least 1');
        assertError(await h.call('GET', '/api/v1/brokers/-3'), 400, 'VALIDATION_FAILED', 'params.id');
        assertError(await h.call('GET', '/api/v1/brokers/1.5'), 400, 'VALIDATION_FAILED', 'params.id must be an integer');
        assertError(await h.call('DELETE', '/api/v1/brokers/99999999999'), 400, 'VALIDATION_FAILED', 'params.id must be at most 2147483647');
      });

      const badBodies: Array<[string, Record<string, unknown>, string]> = [
        ['a missing name', { name: undefined }, 'body.name is required'],
        ['a missing host', { host: undefined }, 'body.host is required'],
        ['an unknown protocol', { protocol: 'http' }, 'body.protocol must be one of: "mqtt", "mqtts", "ws", "wss"'],
        ['port 0', { port: 0 }, 'body.port must be at least 1'],
        ['port 65536', { port: 65536 }, 'body.port must be at most 65535'],
        ['a port given as a string', { port: '1883' }, 'body.port must be an integer'],
        ['a fractional port', { port: 1883.5 }, 'body.port must be an integer'],
        ['a host with a scheme', { host: 'mqtt://broker' }, 'body.host must be a host name or an IP address'],
        ['a host with a space', { host: 'bad host' }, 'body.host must be a host name or an IP address'],
        ['an empty host', { host: '' }, 'body.host must not be empty'],
        ['protocol version 3', { protocolVersion: 3 }, 'body.protocolVersion must be one of: 4, 5'],
        ['an unknown status', { status: 'paused' }, 'body.status must be one of: "active", "draining", "disabled"'],
        ['an unknown provisioner', { provisioner: 'emqx' }, 'body.provisioner must be one of'],
        ['a name with padding', { name: ' padded ' }, 'body.name is invalid'],
        ['an empty name', { name: '' }, 'body.name must not be empty'],
        ['a numeric name', { name: 42 }, 'body.name must be a string'],
        ['an empty password', { password: '' }, 'body.password must not be empty'],
        ['a numeric password', { password: 1234 }, 'body.password must be a string or null'],
        ['a CA that is not PEM', { caCert: 'hello' }, 'body.caCert is invalid: expected a PEM CA certificate'],
        ['an unknown property', { colour: 'red' }, 'body has an unknown property "colour"'],
      ];
      for (const [what, change, message] of badBodies) {
        it(`refuses ${what} with 400 VALIDATION_FAILED and changes nothing`, async () => {
          const body: Record<string, unknown> = { ...makeBroker(), ...change };
          for (const [k, v] of Object.entries(change)) if (v === undefined) delete body[k];
          const res = await h.call('POST', '/api/v1/brokers', { body });
          const err = assertError(res, 400, 'VALIDATION_FAILED', message);
          assert.ok(Array.isArray(err.fields));
          if (typeof body.name === 'string') {
            const found = await db.query('SELECT 1 FROM mqtt_broker_config WHERE name = $1', [body.name]);
            assert.equal(found.rows.length, 0);
          }
          if (typeof body.password === 'string' && body.password !== '') assert.ok(!res.body.includes(body.password));
        });
      }

      it('reports every bad field at once', async () => {
        const res = await h.call('POST', '/api/v1/brokers', { body: { ...makeBroker(), port: 0, protocol: 'x' } });
        const err = assertError(res, 400, 'VALIDATION_FAILED');
        assert.match(err.message as string, /body\.port/);
        assert.match(err.message as string, /body\.protocol/);
      });

      it('refuses an empty PATCH and unknown PATCH fields', async () => {
        const broker = await createBroker();
        assertError(await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: {} }), 400, 'VALIDATION_FAILED', 'body must set at least 1 field');
        assertError(await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { id: 5 } }), 400, 'VALIDATION_FAILED', 'unknown property "id"');
        assertError(await h.call('PATCH', `/api/v1/brokers/${broker.id}`, { body: { port: 'x' } }), 400, 'VALIDATION_FAILED', 'body.port must be an integer');
      });

      it('refuses to delete a broker with assigned devices (409 BROKER_IN_USE), then deletes it once they are gone', async () => {
        const broker = await createBroker();
        const d1 = await createDevice({ brokerId: broker.id });
        const d2 = await createDevice({ brokerId: broker.id });
        const err = assertError(await h.call('DELETE', `/api/v1/brokers/${broker.id}`), 409, 'BROKER_IN_USE', '2 devices are assigned');
        assert.equal(err.deviceCount, 2);
        assert.equal((await h.call('GET', `/api/v1/brokers/${broker.id}`)).statusCode, 200);
        for (const d of [d1, d2]) assert.equal((await h.call('DELETE', `/api/v1/devices/${d.uuid}`)).statusCode, 204);
        const del = await h.call('DELETE', `/api/v1/brokers/${broker.id}`);
        assert.equal(del.statusCode, 204);
        assert.equal(del.body, '');
        assertError(await h.call('GET', `/api/v1/brokers/${broker.id}`), 404, 'BROKER_NOT_FOUND');
      });
    });

    describe('devices', () => {
      it('registers a device with a generated uuid and shows its token once', async () => {
        const res = await h.call('POST', '/api/v1/devices', { body: {} });
        assert.equal(res.statusCode, 201, res.body);
        const device = res.json();
        secrets.push(device.token);
        assert.match(device.uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
        assert.match(device.token, /^syd_[A-Za-z0-9_-]{43}$/);
        assert.deepEqual(Object.keys(device).sort(), ['brokerId', 'connectedBrokerId', 'createdAt', 'lastSeenAt', 'name', 'online', 'token', 'updatedAt', 'uuid']);
        assert.equal(device.brokerId, null);
        assert.equal(device.online, false);
        assert.equal(device.lastSeenAt, null);
        assert.equal(res.headers.location, `/api/v1/devices/${device.uuid}`);

        const got = await h.call('GET', `/api/v1/devices/${device.uuid}`);
        assert.equal(got.statusCode, 200);
        assert.ok(!('token' in got.json()));
        assert.ok(!got.body.includes(device.token));
        const { token: _token, ...withoutToken } = device;
        assert.deepEqual(got.json(), withoutToken);

        const stored = (await db.query<{ token_hash: string }>('SELECT token_hash FROM devices WHERE uuid = $1', [device.uuid])).rows[0];
        assert.equal(stored?.token_hash, hashToken(device.token));
      });

      it('registers a device with a given uuid, name and active broker', async () => {
        const broker = await createBroker();
        const body = makeDevice({ name: 'Pump 7', brokerId: broker.id, uuid: `AA:bb_cc-${uniqueSuffix()}` });
        const device = await createDevice(body);
        assert.equal(device.uuid, body.uuid);
        assert.equal(device.name, 'Pump 7');
        assert.equal(device.brokerId, broker.id);
        const audit = await db.query<{ action: string; details: Record<string, unknown> }>("SELECT action, details FROM audit_log WHERE target_type = 'device' AND target_id = $1", [body.uuid]);
        assert.equal(audit.rows[0]?.action, 'device.create');
        assert.ok(!JSON.stringify(audit.rows).includes(device.token));
      });

      it('refuses a taken uuid with 409 DEVICE_EXISTS', async () => {
        const device = await createDevice();
        assertError(await h.call('POST', '/api/v1/devices', { body: { uuid: device.uuid } }), 409, 'DEVICE_EXISTS', device.uuid);
      });

      it('refuses an unknown broker (404) and an inactive one (409 BROKER_NOT_ACTIVE)', async () => {
        assertError(await h.call('POST', '/api/v1/devices', { body: makeDevice({ brokerId: 2_000_000_000 }) }), 404, 'BROKER_NOT_FOUND');
        const draining = await createBroker({ status: 'draining' });
        const body = makeDevice({ brokerId: draining.id });
        assertError(await h.call('POST', '/api/v1/devices', { body }), 409, 'BROKER_NOT_ACTIVE', 'draining');
        assert.equal((await db.query('SELECT 1 FROM devices WHERE uuid = $1', [body.uuid])).rows.length, 0);
      });

      const badDevices: Array<[string, Record<string, unknown>, string]> = [
        ['a uuid with a slash', { uuid: 'a/b' }, 'body.uuid is invalid'],
        ['a uuid with a plus', { uuid: 'a+b' }, 'body.uuid is invalid'],
        ['a uuid with a hash', { uuid: 'a#' }, 'body.uuid is invalid'],
        ['a uuid with a dollar', { uuid: '$aws' }, 'body.uuid is invalid'],
        ['an empty uuid', { uuid: '' }, 'body.uuid is invalid'],
        ['a 129-character uuid', { uuid: 'x'.repeat(129) }, 'body.uuid is invalid'],
        ['a numeric uuid', { uuid: 12 }, 'body.uuid must be a string'],
        ['a brokerId of 0', { brokerId: 0 }, 'body.brokerId must be at least 1'],
        ['a brokerId as a string', { brokerId: '1' }, 'body.brokerId must be an integer'],
        ['an empty name', { name: '' }, 'body.name must not be empty'],
        ['an unknown property', { token: 'mine' }, 'body has an unknown property "token"'],
      ];
      for (const [what, body, message] of badDevices) {
        it(`refuses ${what} with 400 VALIDATION_FAILED`, async () => {
          assertError(await h.call('POST', '/api/v1/devices', { body }), 400, 'VALIDATION_FAILED', message);
        });
      }

      it('accepts a 128-character uuid', async () => {
        const uuid = `${uniqueSuffix()}-`.padEnd(128, 'z');
        const device = await createDevice({ uuid });
        assert.equal(device.uuid, uuid);
        assert.equal((await h.call('GET', `/api/v1/devices/${uuid}`)).statusCode, 200);
      });

      it('lists devices in pages with a total, filtered by broker', async () => {
        const broker = await createBroker();
        const other = await createBroker();
        const uuids: string[] = [];
        for (let i = 0; i < 5; i++) uuids.push((await createDevice({ brokerId: broker.id })).uuid);
        await createDevice({ brokerId: other.id });

        const seen: string[] = [];
        for (const offset of [0, 2, 4]) {
          const res = await h.call('GET', `/api/v1/devices?brokerId=${broker.id}&limit=2&offset=${offset}`);
          assert.equal(res.statusCode, 200, res.body);
          const page = res.json();
          assert.equal(page.total, 5);
          assert.equal(page.limit, 2);
          assert.equal(page.offset, offset);
          assert.equal(page.items.length, offset === 4 ? 1 : 2);
          for (const d of page.items) {
            assert.equal(d.brokerId, broker.id);
            assert.ok(!('token' in d) && !('tokenHash' in d) && !('token_hash' in d));
            seen.push(d.uuid);
          }
        }
        assert.deepEqual([...seen].sort(), [...uuids].sort());
        const empty = (await h.call('GET', `/api/v1/devices?brokerId=${broker.id}&offset=10`)).json();
        assert.deepEqual(empty.items, []);
        assert.equal(empty.total, 5);
      });

      it('defaults to 50 per page, offset 0', async () => {
        const page = (await h.call('GET', '/api/v1/devices')).json();
        assert.equal(page.limit, 50);
        assert.equal(page.offset, 0);
        assert.ok(page.items.length <= 50);
        assert.ok(page.total >= page.items.length);
      });

      it('refuses bad paging and filters with 400 naming the parameter', async () => {
        assertError(await h.call('GET', '/api/v1/devices?limit=0'), 400, 'VALIDATION_FAILED', 'querystring.limit must be at least 1');
        assertError(await h.call('GET', '/api/v1/devices?limit=501'), 400, 'VALIDATION_FAILED', 'querystring.limit must be at most 500');
        assertError(await h.call('GET', '/api/v1/devices?limit=ten'), 400, 'VALIDATION_FAILED', 'querystring.limit must be an integer');
        assertError(await h.call('GET', '/api/v1/devices?offset=-1'), 400, 'VALIDATION_FAILED', 'querystring.offset must be at least 0');
        assertError(await h.call('GET', '/api/v1/devices?brokerId=x'), 400, 'VALIDATION_FAILED', 'querystring.brokerId must be an integer');
        assertError(await h.call('GET', '/api/v1/devices?colour=red'), 400, 'VALIDATION_FAILED', 'querystring has an unknown property "colour"');
      });

      it('answers 404 DEVICE_NOT_FOUND and 400 for a malformed uuid in the path', async () => {
        assertError(await h.call('GET', '/api/v1/devices/no-such-device'), 404, 'DEVICE_NOT_FOUND', 'no-such-device');
        assertError(await h.call('DELETE', '/api/v1/devices/no-such-device'), 404, 'DEVICE_NOT_FOUND');
        assertError(await h.call('GET', '/api/v1/devices/bad%2Buuid'), 400, 'VALIDATION_FAILED', 'params.uuid is invalid');
        assertError(await h.call('GET', `/api/v1/devices/${'y'.repeat(129)}`), 400, 'VALIDATION_FAILED', 'params.uuid is invalid');
      });

      it('deletes a device with its shadows, audits it, and its token stops working', async () => {
        const device = await createDevice();
        await db.query("INSERT INTO device_shadows (device_uuid, shadow_name, desired) VALUES ($1, 'cfg', '{\"a\":1}'::jsonb)", [device.uuid]);
        const res = await h.call('DELETE', `/api/v1/devices/${device.uuid}`);
        assert.equal(res.statusCode, 204);
        assert.equal(res.body, '');
        assertError(await h.call('GET', `/api/v1/devices/${device.uuid}`), 404, 'DEVICE_NOT_FOUND');
        assert.equal((await db.query('SELECT 1 FROM device_shadows WHERE device_uuid = $1', [device.uuid])).rows.length, 0);
        const audit = await db.query<{ action: string }>("SELECT action FROM audit_log WHERE target_type = 'device' AND target_id = $1 ORDER BY id", [device.uuid]);
        assert.deepEqual(audit.rows.map((r) => r.action), ['device.create', 'device.delete']);
        assertError(await h.call('GET', `/api/v1/devices/${device.uuid}`, { token: device.token }), 401, 'UNAUTHORIZED');
      });

      it('lets a device token read its own device only, and nothing of the admin API', async () => {
        const me = await createDevice();
        const other = await createDevice();
        const mine = await h.call('GET', `/api/v1/devices/${me.uuid}`, { token: me.token });
        assert.equal(mine.statusCode, 200, mine.body);
        assert.equal(mine.json().uuid, me.uuid);

        const probe = await h.call('GET', `/api/v1/devices/${me.uuid}/probe`, { token: me.token });
        assert.deepEqual(probe.json(), { principal: { kind: 'device', deviceUuid: me.uuid } });
        const adminProbe = await h.call('GET', `/api/v1/devices/${me.uuid}/probe`);
        assert.deepEqual(adminProbe.json(), { principal: { kind: 'admin', scope: 'admin' } });

        assertError(await h.call('GET', `/api/v1/devices/${other.uuid}`, { token: me.token }), 403, 'FORBIDDEN', 'its own');
        assertError(await h.call('GET', `/api/v1/devices/${other.uuid}/probe`, { token: me.token }), 403, 'FORBIDDEN');
        assertError(await h.call('DELETE', `/api/v1/devices/${me.uuid}`, { token: me.token }), 403, 'FORBIDDEN', 'admin token');
        assertError(await h.call('GET', '/api/v1/devices', { token: me.token }), 403, 'FORBIDDEN');
        assertError(await h.call('POST', '/api/v1/devices', { token: me.token, body: {} }), 403, 'FORBIDDEN');
        assertError(await h.call('GET', '/api/v1/brokers', { token: me.token }), 403, 'FORBIDDEN');
        assertError(await h.call('POST', '/api/v1/brokers', { token: me.token, body: makeBroker() }), 403, 'FORBIDDEN');
        assert.equal((await h.call('GET', `/api/v1/devices/${me.uuid}`)).statusCode, 200);
      });
    });

    describe('errors', () => {
      it('answers 400 INVALID_JSON for a malformed body and for a __proto__ key', async () => {
        assertError(await h.call('POST', '/api/v1/brokers', { payload: '{"name": ', headers: { 'content-type': 'application/json' } }), 400, 'INVALID_JSON');
        assertError(
          await h.call('POST', '/api/v1/devices', { payload: '{"__proto__": {"admin": true}}', headers: { 'content-type': 'application/json' } }),
          400,
          'INVALID_JSON',
        );
      });

      it('answers 415 UNSUPPORTED_MEDIA_TYPE for a non-JSON body', async () => {
        assertError(await h.call('POST', '/api/v1/devices', { payload: 'uuid=x', headers: { 'content-type': 'text/plain' } }), 415, 'UNSUPPORTED_MEDIA_TYPE', 'application/json');
        assertError(
          await h.call('POST', '/api/v1/devices', { payload: 'uuid=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
          415,
          'UNSUPPORTED_MEDIA_TYPE',
        );
      });

      it('answers 413 PAYLOAD_TOO_LARGE above 128 KiB', async () => {
        const res = await h.call('POST', '/api/v1/devices', { body: { name: 'x'.repeat(129 * 1024) } });
        assertError(res, 413, 'PAYLOAD_TOO_LARGE', '131072');
      });

      it('answers 404 NOT_FOUND for an unknown route and 405 for a known path with another method', async () => {
        assertError(await h.call('GET', '/api/v1/nothing-here'), 404, 'NOT_FOUND', '/api/v1/nothing-here');
        assertError(await h.call('GET', '/nowhere', { token: null }), 404, 'NOT_FOUND');
        const res = await h.call('PUT', '/api/v1/brokers', { body: {} });
        assertError(res, 405, 'METHOD_NOT_ALLOWED');
        assert.match(String(res.headers.allow), /GET/);
        assert.match(String(res.headers.allow), /POST/);
      });

      it('answers 500 INTERNAL without the cause, and logs it with the request id', async () => {
        const res = await h.call('GET', '/api/v1/explode', { headers: { 'x-request-id': 'req-explode-1' } });
        const err = assertError(res, 500, 'INTERNAL', 'req-explode-1');
        assert.equal(err.requestId, 'req-explode-1');
        assert.equal(res.headers['x-request-id'], 'req-explode-1');
        assert.ok(!res.body.includes('hunter2') && !res.body.includes('/srv/secret') && !res.body.includes('stack'));
        const logged = h.logLines.find((l) => l.includes('req-explode-1') && l.includes('"level":50'));
        assert.ok(logged, 'the failure is logged at error level with the request id');
      });

      it('gives every answer an x-request-id', async () => {
        const res = await h.call('GET', '/healthz', { token: null });
        assert.match(String(res.headers['x-request-id']), /^[0-9a-f-]{36}$/);
      });
    });

    describe('OpenAPI and docs', () => {
      it('lists every route with its methods in /openapi.json', async () => {
        const res = await h.call('GET', '/openapi.json', { token: null });
        assert.equal(res.statusCode, 200);
        const doc = res.json();
        assert.match(doc.openapi, /^3\./);
        const expected: Record<string, string[]> = {
          '/healthz': ['get'],
          '/readyz': ['get'],
          '/api/v1/brokers': ['get', 'post'],
          '/api/v1/brokers/{id}': ['delete', 'get', 'patch'],
          '/api/v1/devices': ['get', 'post'],
          '/api/v1/devices/{uuid}': ['delete', 'get'],
          '/api/v1/devices/{uuid}/probe': ['get'],
        };
        for (const [path, methods] of Object.entries(expected)) {
          assert.ok(doc.paths[path], `missing ${path}`);
          assert.deepEqual(Object.keys(doc.paths[path]).sort(), methods, path);
        }
        assert.ok(doc.components.securitySchemes.bearerAuth);
        assert.deepEqual(doc.paths['/healthz'].get.security, []);
        const post = doc.paths['/api/v1/brokers'].post;
        assert.ok(post.requestBody.content['application/json'].schema.properties.password);
        assert.ok(!('password' in post.responses['201'].content['application/json'].schema.properties));
      });

      it('serves Swagger UI from bundled assets', async () => {
        const page = await h.call('GET', '/docs', { token: null });
        assert.equal(page.statusCode, 200);
        assert.match(String(page.headers['content-type']), /text\/html/);
        const css = await h.call('GET', '/docs/static/swagger-ui.css', { token: null });
        assert.equal(css.statusCode, 200);
        assert.match(String(css.headers['content-type']), /text\/css/);
      });
    });

    describe('readiness', () => {
      const activeBrokers = async () =>
        (await db.query<{ id: number; name: string }>("SELECT id, name FROM mqtt_broker_config WHERE status = 'active'")).rows;

      it('answers 200 when the database answers and every active broker is connected, owned here or not', async () => {
        const rows = await activeBrokers();
        const owned = rows[0]?.id;
        h.poolStatus.splice(0, h.poolStatus.length, ...rows.map((r) => ({ brokerId: r.id, name: r.name, connected: true, owner: r.id === owned })));
        const res = await h.call('GET', '/readyz', { token: null });
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.json().status, 'ok');
        assert.equal(res.json().database, 'ok');
        const brokers = res.json().brokers as Array<{ brokerId: number; owner: boolean }>;
        assert.deepEqual(
          brokers.map((b) => [b.brokerId, b.owner]).sort((x, y) => Number(x[0]) - Number(y[0])),
          rows.map((r) => [r.id, r.id === owned]).sort((x, y) => Number(x[0]) - Number(y[0])),
        );
      });

      it('answers 503 NOT_READY naming a disconnected active broker, ignoring non-active ones', async () => {
        const down = await createBroker();
        const draining = await createBroker({ status: 'draining' });
        const rows = await activeBrokers();
        h.poolStatus.splice(
          0,
          h.poolStatus.length,
          ...rows.map((r) => ({ brokerId: r.id, name: r.name, connected: r.id !== down.id, owner: false, ...(r.id === down.id ? { lastError: 'ECONNREFUSED' } : {}) })),
          { brokerId: draining.id, name: draining.name, connected: false, owner: false },
        );
        const res = await h.call('GET', '/readyz', { token: null });
        const err = assertError(res, 503, 'NOT_READY', down.name);
        assert.ok(!(err.message as string).includes(draining.name));
        assert.equal(err.database, 'ok');
        const check = (err.brokers as Array<{ brokerId: number; connected: boolean; error?: string }>).find((b) => b.brokerId === down.id);
        assert.deepEqual(check, { brokerId: down.id, name: down.name, connected: false, owner: false, error: 'ECONNREFUSED' });

        // An active broker the pool does not know yet is not ready either.
        h.poolStatus.splice(h.poolStatus.findIndex((s) => s.brokerId === down.id), 1);
        assertError(await h.call('GET', '/readyz', { token: null }), 503, 'NOT_READY', down.name);
        await h.call('PATCH', `/api/v1/brokers/${down.id}`, { body: { status: 'disabled' } });
        assert.equal((await h.call('GET', '/readyz', { token: null })).statusCode, 200);
      });
    });

    describe('secrets', () => {
      it('never writes a password or a token to the log', () => {
        assert.ok(secrets.length > 3);
        const text = h.logLines.join('\n');
        for (const secret of [...secrets, h.adminToken]) assert.ok(!text.includes(secret), 'a secret reached the log');
      });
    });
  });
}
