import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { DeviceConfig } from '../assignments/device-config.ts';
import { CONFIG_ROUTE, configEtag, createConfigFastPath } from './config-fast-path.ts';

const config: DeviceConfig = { mqtt: { brokerId: 2, broker: 'mqtt://127.0.0.1:1884', protocol: 'mqtt', host: '127.0.0.1', port: 1884 }, version: 7 };
const ETAG = configEtag(config);
const TOKEN = 'syd_tokenOfDev1';

describe('config fast path', () => {
  let server: Server;
  let base: string;
  let info = false;
  const configs = new Map<string, DeviceConfig>([['dev-1', config]]);
  const observed: Array<[string, string, number]> = [];
  before(async () => {
    const fast = createConfigFastPath({
      deviceOfToken: (t) => (t === TOKEN ? 'dev-1' : t === 'syd_tokenOfDev2' ? 'dev-2' : undefined),
      cachedConfig: (uuid) => configs.get(uuid),
      infoLogging: () => info,
      observe: (m, r, s) => void observed.push([m, r, s]),
    });
    // What the fast path leaves alone gets 418 here (Fastify's place in the real server).
    server = createServer((req, res) => {
      if (!fast(req, res)) res.writeHead(418).end('fallthrough');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const get = (path: string, headers: Record<string, string> = {}, method = 'GET') =>
    fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}`, 'if-none-match': ETAG, ...headers } });

  it('answers 304 with the ETag, cache-control and a request id, and counts it as the route', async () => {
    const res = await get('/api/v1/devices/dev-1/config', { 'x-request-id': 'req-42' });
    assert.equal(res.status, 304);
    assert.equal(res.headers.get('etag'), ETAG);
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-request-id'), 'req-42');
    assert.deepEqual(observed.at(-1), ['GET', CONFIG_ROUTE, 304]);
    const generated = await get('/api/v1/devices/dev-1/config', { 'x-request-id': 'bad id with spaces' });
    assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.equal((await get('/api/v1/devices/dev-1/config', { 'if-none-match': `"x", W/${ETAG}` })).status, 304, 'a weak match in a list');
  });

  it('leaves every other request to the framework, writing nothing', async () => {
    const cases: Array<[string, Parameters<typeof get>]> = [
      ['another device’s token', ['/api/v1/devices/dev-1/config', { authorization: 'Bearer syd_tokenOfDev2' }]],
      ['an unknown token', ['/api/v1/devices/dev-1/config', { authorization: 'Bearer syd_nobody' }]],
      ['not a bearer token', ['/api/v1/devices/dev-1/config', { authorization: `Basic ${TOKEN}` }]],
      ['no If-None-Match', ['/api/v1/devices/dev-1/config', { 'if-none-match': '' }]],
      ['a changed config (other ETag)', ['/api/v1/devices/dev-1/config', { 'if-none-match': '"6.2"' }]],
      ['a query string (?wait=)', ['/api/v1/devices/dev-1/config?wait=30']],
      ['a trailing slash', ['/api/v1/devices/dev-1/config/']],
      ['a percent-encoded uuid', ['/api/v1/devices/dev%2D1/config']],
      ['a path that only ends like it', ['/api/v1/devices/dev-1/x/config']],
      ['a HEAD', ['/api/v1/devices/dev-1/config', {}, 'HEAD']],
      ['a device without a cached config', ['/api/v1/devices/dev-2/config', { authorization: 'Bearer syd_tokenOfDev2' }]],
    ];
    const before = observed.length;
    for (const [why, args] of cases) assert.equal((await get(...args)).status, 418, why);
    assert.equal(observed.length, before, 'nothing counted');
  });

  it('steps aside while info logging is on (the framework logs each request)', async () => {
    info = true;
    try {
      assert.equal((await get('/api/v1/devices/dev-1/config')).status, 418);
    } finally {
      info = false;
    }
    assert.equal((await get('/api/v1/devices/dev-1/config')).status, 304);
  });
});
