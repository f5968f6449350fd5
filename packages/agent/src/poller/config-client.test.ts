import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigFetchError, fetchDeviceConfig, parseConfigBody } from './config-client.ts';

const mqtt = { brokerId: 2, broker: 'mqtt://127.0.0.1:1884', protocol: 'mqtt', host: '127.0.0.1', port: 1884 };

describe('config-client', () => {
  let server: Server;
  let apiUrl = '';
  const seen: Array<{ url: string | undefined; auth: string | undefined; inm: string | undefined }> = [];
  before(async () => {
    // A real HTTP server answering like the config endpoint, per device uuid.
    server = createServer((req, res) => {
      seen.push({ url: req.url, auth: req.headers.authorization, inm: req.headers['if-none-match'] as string | undefined });
      const uuid = req.url?.split('/')[4];
      if (req.headers.authorization !== 'Bearer tok') return res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"Unauthorized","code":"UNAUTHORIZED","message":"bad token"}');
      if (uuid === 'nobroker') return res.writeHead(200, { 'content-type': 'application/json' }).end('{"mqtt":null,"version":0}');
      if (uuid === 'broken') return res.writeHead(503).end('down');
      if (req.headers['if-none-match'] === '"7.2"') return res.writeHead(304, { etag: '"7.2"' }).end();
      res.writeHead(200, { 'content-type': 'application/json', etag: '"7.2"' }).end(JSON.stringify({ mqtt, version: 7 }));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    apiUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('fetches the broker with the device token and returns it with the version and ETag', async () => {
    const res = await fetchDeviceConfig({ apiUrl, deviceUuid: 'd1', deviceToken: 'tok' });
    assert.deepEqual(res, { status: 'ok', etag: '"7.2"', version: 7, mqtt: { brokerId: 2, protocol: 'mqtt', host: '127.0.0.1', port: 1884, url: 'mqtt://127.0.0.1:1884' } });
    assert.deepEqual(seen.at(-1), { url: '/api/v1/devices/d1/config', auth: 'Bearer tok', inm: undefined });
  });

  it('sends If-None-Match and understands 304', async () => {
    assert.deepEqual(await fetchDeviceConfig({ apiUrl, deviceUuid: 'd1', deviceToken: 'tok', etag: '"7.2"' }), { status: 'not-modified', etag: '"7.2"' });
  });

  it('returns mqtt null for a device without a broker', async () => {
    const res = await fetchDeviceConfig({ apiUrl, deviceUuid: 'nobroker', deviceToken: 'tok' });
    assert.equal(res.status === 'ok' && res.mqtt, null);
  });

  it('fails permanently on a refused token, without repeating it', async () => {
    const err = await fetchDeviceConfig({ apiUrl, deviceUuid: 'd1', deviceToken: 'secret-token' }).catch((e: unknown) => e);
    assert.ok(err instanceof ConfigFetchError);
    assert.equal(err.permanent, true);
    assert.equal(err.httpStatus, 401);
    assert.match(err.message, /401 UNAUTHORIZED: bad token \(check the device token\)/);
    assert.ok(!err.message.includes('secret-token'));
  });

  it('fails transiently on 5xx and on a network error', async () => {
    const e1 = await fetchDeviceConfig({ apiUrl, deviceUuid: 'broken', deviceToken: 'tok' }).catch((e: unknown) => e);
    assert.ok(e1 instanceof ConfigFetchError && !e1.permanent && e1.httpStatus === 503);
    const e2 = await fetchDeviceConfig({ apiUrl: 'http://127.0.0.1:1', deviceUuid: 'd1', deviceToken: 'tok' }).catch((e: unknown) => e);
    assert.ok(e2 instanceof ConfigFetchError && !e2.permanent);
  });

  it('validates the body', () => {
    assert.throws(() => parseConfigBody([]), /expected a JSON object/);
    assert.throws(() => parseConfigBody({ mqtt, version: -1 }), /version/);
    assert.throws(() => parseConfigBody({ mqtt: { ...mqtt, port: 0 }, version: 1 }), /mqtt\.port/);
    assert.throws(() => parseConfigBody({ mqtt: { ...mqtt, broker: 'mqtt://other:1884' }, version: 1 }), /mqtt\.broker/);
    assert.deepEqual(parseConfigBody({ mqtt: null, version: 3 }), { mqtt: null, version: 3 });
  });
});
