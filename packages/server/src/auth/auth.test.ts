import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger, silentLogger } from '../log.ts';
import { ensureAdminToken } from './admin-token.ts';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AppError } from '../errors.ts';
import { DEVICE_TOKEN_CACHE_MS, actorOf, authPlugin, createTokenCache, requiredScope, scopeCovers, type AdminScope } from './auth.plugin.ts';
import { generateToken, hashToken, hashesEqual, tokenMatchesHash } from './tokens.ts';

describe('tokens', () => {
  it('generates prefixed 32-byte base64url tokens, all different', () => {
    const a = generateToken('sya_');
    const d = generateToken('syd_');
    assert.match(a, /^sya_[A-Za-z0-9_-]{43}$/);
    assert.match(d, /^syd_[A-Za-z0-9_-]{43}$/);
    assert.notEqual(generateToken('syd_'), d);
  });

  it('hashes with sha256 hex and compares in constant time', () => {
    const t = generateToken('syd_');
    const h = hashToken(t);
    assert.match(h, /^[0-9a-f]{64}$/);
    assert.ok(tokenMatchesHash(t, h));
    assert.ok(!tokenMatchesHash(`${t}x`, h));
    assert.ok(!hashesEqual(h, 'not-hex'));
    assert.ok(!hashesEqual(h, h.slice(0, 62)));
  });
});

describe('ensureAdminToken', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'sy-admin-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('uses SWITCHYARD_ADMIN_TOKEN when set and writes nothing', async () => {
    const sub = path.join(dir, 'env');
    const got = await ensureAdminToken({ configured: 'my-configured-admin-token', dataDir: sub, log: silentLogger() });
    assert.deepEqual(got, { token: null, hash: hashToken('my-configured-admin-token'), source: 'env' });
    await assert.rejects(stat(sub), { code: 'ENOENT' });
  });

  it('generates a token once into admin-token (0600), then reads it and never shows it again', async () => {
    const sub = path.join(dir, 'gen');
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
    const first = await ensureAdminToken({ dataDir: sub, log });
    assert.equal(first.source, 'generated');
    assert.match(first.token ?? '', /^sya_/);
    assert.equal(first.hash, hashToken(first.token!));
    const file = path.join(sub, 'admin-token');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await readFile(file, 'utf8')).trim(), first.token);
    assert.ok(!lines.join('').includes(first.token!), 'the token reached the log');

    const second = await ensureAdminToken({ dataDir: sub, log });
    assert.deepEqual(second, { token: null, hash: first.hash, source: 'file' });
  });

  it('warns about a token file others can read, and refuses an empty one', async () => {
    const sub = path.join(dir, 'perm');
    const lines: string[] = [];
    const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
    await ensureAdminToken({ dataDir: sub, log });
    await chmod(path.join(sub, 'admin-token'), 0o644);
    await ensureAdminToken({ dataDir: sub, log });
    assert.ok(lines.some((l) => l.includes('chmod 600')));
    await writeFile(path.join(sub, 'admin-token'), '\n');
    await assert.rejects(ensureAdminToken({ dataDir: sub, log }), /empty or malformed/);
  });
});

describe('device token cache', () => {
  it('forgets an entry the TTL after it was stored, a hit never extending it', () => {
    let t = 0;
    const cache = createTokenCache({ ttlMs: 2000, now: () => t });
    cache.set('syd_1', 'dev-1', cache.stamp());
    t = 1999;
    assert.equal(cache.get('syd_1'), 'dev-1');
    t = 2000;
    assert.equal(cache.get('syd_1'), undefined);
    assert.equal(cache.size(), 0);
  });

  it('drops every entry of a device on forgetDevice, and the oldest beyond max', () => {
    const cache = createTokenCache({ max: 2, now: () => 0 });
    cache.set('a', 'dev-1', cache.stamp());
    cache.set('b', 'dev-2', cache.stamp());
    cache.set('c', 'dev-1', cache.stamp());
    assert.equal(cache.get('a'), undefined, 'evicted: the oldest');
    cache.forgetDevice('dev-1');
    assert.equal(cache.get('c'), undefined);
    assert.equal(cache.get('b'), 'dev-2');
    assert.equal(DEVICE_TOKEN_CACHE_MS, 60_000);
  });

  it('does not store a lookup that started before a device was forgotten or the cache cleared', () => {
    const cache = createTokenCache({ now: () => 0 });
    const before = cache.stamp();
    cache.forgetDevice('dev-9'); // e.g. a rotation's NOTIFY arriving while the lookup was in flight
    cache.set('syd_old', 'dev-9', before);
    assert.equal(cache.get('syd_old'), undefined);
    cache.set('syd_new', 'dev-9', cache.stamp());
    assert.equal(cache.get('syd_new'), 'dev-9');
    const beforeClear = cache.stamp();
    cache.clear();
    assert.equal(cache.size(), 0);
    cache.set('syd_x', 'dev-1', beforeClear);
    assert.equal(cache.get('syd_x'), undefined);
  });

  it('stores nothing with a TTL of 0', () => {
    const cache = createTokenCache({ ttlMs: 0 });
    cache.set('a', 'dev-1', cache.stamp());
    assert.equal(cache.get('a'), undefined);
  });
});

describe('scopes', () => {
  it('orders viewer < operator < admin', () => {
    assert.ok(scopeCovers('admin', 'operator') && scopeCovers('admin', 'viewer') && scopeCovers('operator', 'viewer'));
    assert.ok(!scopeCovers('viewer', 'operator') && !scopeCovers('operator', 'admin'));
  });

  it('defaults to viewer for reads and admin for every other method', () => {
    assert.equal(requiredScope('GET', {}), 'viewer');
    assert.equal(requiredScope('HEAD', undefined), 'viewer');
    for (const m of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) assert.equal(requiredScope(m, {}), 'admin');
    assert.equal(requiredScope('PUT', { scope: 'operator' }), 'operator');
    assert.equal(requiredScope('GET', { scope: 'admin' }), 'admin');
  });

  it('names the actor of each principal', () => {
    assert.equal(actorOf({ kind: 'admin', scope: 'admin' }), 'admin');
    assert.equal(actorOf({ kind: 'admin', scope: 'viewer', tokenId: 7, tokenName: 'grafana' }), 'token:7:grafana');
    assert.equal(actorOf({ kind: 'device', deviceUuid: 'd-1' }), 'device:d-1');
    assert.equal(actorOf(null), 'anonymous');
  });
});

describe('auth plugin scopes', () => {
  const admin = generateToken('sya_');
  const tokens: Record<string, { id: number; name: string; scope: AdminScope }> = {
    [hashToken('syv_viewer-token-0123456789')]: { id: 1, name: 'viewer', scope: 'viewer' },
    [hashToken('syo_operator-token-0123456789')]: { id: 2, name: 'op', scope: 'operator' },
  };
  // No query may reach the database in these cases (API tokens are found by the injected lookup).
  const noDb = { query: async () => assert.fail('the database was asked') };

  async function app(routes: (a: FastifyInstance) => void) {
    const a = Fastify();
    a.setErrorHandler((err: AppError, _req, reply) => reply.code(err.status ?? 500).send({ code: err.code, ...err.details }));
    await a.register(async (api) => {
      await api.register(authPlugin, { db: noDb as never, adminTokenHash: hashToken(admin), apiTokens: { authenticate: async (h) => tokens[h] ?? null } });
      routes(api);
    });
    await a.ready();
    return a;
  }

  it('answers 403 with the required scope before the handler runs, and lets a covering scope through', async () => {
    let ran = 0;
    const a = await app((api) => {
      api.get('/read', async () => ({ ran: ++ran }));
      api.put('/assign', { config: { scope: 'operator' } }, async () => ({ ran: ++ran }));
      api.post('/brokers', async () => ({ ran: ++ran }));
    });
    const call = (method: 'GET' | 'PUT' | 'POST', url: string, token: string) => a.inject({ method, url, headers: { authorization: `Bearer ${token}` } });
    const viewer = 'syv_viewer-token-0123456789';
    const op = 'syo_operator-token-0123456789';
    assert.equal((await call('GET', '/read', viewer)).statusCode, 200);
    const refused = await call('PUT', '/assign', viewer);
    assert.equal(refused.statusCode, 403);
    assert.deepEqual(refused.json(), { code: 'FORBIDDEN', requiredScope: 'operator', tokenScope: 'viewer' });
    assert.equal((await call('PUT', '/assign', op)).statusCode, 200);
    assert.equal((await call('POST', '/brokers', op)).statusCode, 403, 'a mutating route without a scope is admin-only');
    assert.equal((await call('POST', '/brokers', admin)).statusCode, 200);
    assert.equal(ran, 3);
    await a.close();
  });

  it('refuses to start with a route whose scope is not one of the three', async () => {
    await assert.rejects(
      app((api) => {
        api.post('/x', { config: { scope: 'root' as AdminScope } }, async () => ({}));
      }),
      /declares scope "root"/,
    );
  });
});
