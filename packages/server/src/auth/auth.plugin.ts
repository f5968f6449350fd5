/**
 * Authentication and authorisation of `/api/v1`: every route there needs `Authorization: Bearer <token>`.
 *
 * - The bootstrap admin token (compared by sha256, in constant time) → `{ kind: 'admin', scope: 'admin' }`.
 * - An API token (`api_tokens`, see `tokens/`) → `{ kind: 'admin', scope, tokenId, tokenName }`. Looked up on
 *   every request (one indexed query, no cache), so a revoked token gets 401 on its very next request, on every
 *   instance. Tokens starting with `syd_` skip this lookup (they are device tokens).
 * - A device token (`devices.token_hash` lookup) → `{ kind: 'device', deviceUuid }`. A device may only reach a
 *   route marked device-accessible — `config: { device: true }` on a route with a `:uuid` parameter — and only
 *   for its own uuid. Anything else is 403 FORBIDDEN.
 * - No token, another scheme or an unknown (or revoked) token → 401 UNAUTHORIZED (with `WWW-Authenticate: Bearer`).
 *
 * Scopes (`viewer` < `operator` < `admin`): a route declares the least scope it needs with `config: { scope }`.
 * The default is the safe one: `viewer` for GET and HEAD, `admin` for every other method — so a mutating route
 * nobody thought about is admin-only. A token below the route's scope gets 403 FORBIDDEN (with `requiredScope`
 * and `tokenScope` in the answer) before the body is read or anything runs. The scope of each route is also
 * written into the OpenAPI document as `x-switchyard-scope`.
 *
 * Device token lookups are cached in memory (token → device uuid), so that a polling device's request needs neither
 * a query nor a hash: the raw token is the key (memory only, never logged), and a hit skips the sha256 (which
 * costs more than the rest of the auth hook; only tokens that already failed the admin comparison are stored, so a
 * hit is never the admin token). The cache is kept true by NOTIFY: a token rotated or a device deleted stops
 * working on the instance that did it at once (`forgetDevice`) and on every other instance when the transaction's
 * DEVICE_CREDENTIALS_CHANNEL notification arrives; a lookup that raced with such a change is not stored; when the
 * LISTEN connection drops (notifications may be lost) the cache is emptied, and again when it is back. An entry
 * also expires {@link DEVICE_TOKEN_CACHE_MS} (60 s) after the database answered, whatever happens. Unknown tokens
 * are never cached.
 *
 * Register it inside the `/api/v1` context before the routes; routes outside (health, docs) stay public.
 * The hook runs at `onRequest`, before the body is read, so an unauthenticated caller learns nothing from
 * validation errors.
 */
import { hash as oneShotHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import type { Queryable } from '../db/db.ts';
import { findDeviceByTokenHash } from '../devices/devices.store.ts';
import { AppError } from '../errors.ts';
import { DEVICE_TOKEN_PREFIX, hashesEqual } from './tokens.ts';

/** Admin scopes (DESIGN §6), from least to most: viewer (reads), operator (+ assign, jobs, shadows), admin (everything). */
export type AdminScope = 'admin' | 'operator' | 'viewer';

export const ADMIN_SCOPES: readonly AdminScope[] = ['viewer', 'operator', 'admin'];

/**
 * Who is calling; set by the auth hook on every `/api/v1` request, null on public routes. `kind: 'admin'` is
 * anyone on the admin API: the bootstrap admin token (no `tokenId`) or an API token of any scope.
 */
export type Principal =
  | { kind: 'admin'; scope: AdminScope; tokenId?: number; tokenName?: string }
  | { kind: 'device'; deviceUuid: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null;
  }
  interface FastifyContextConfig {
    /**
     * Device-accessible: a device token may call this route for its own `:uuid` (the route must have that
     * parameter). Admin tokens may always call it.
     */
    device?: boolean;
    /**
     * The least scope an admin-API token needs for this route. Default: `viewer` for GET/HEAD, `admin` for
     * every other method.
     */
    scope?: AdminScope;
    /**
     * Audit action (e.g. `shadow.update`) written when an admin-API token's request succeeds, for a route whose
     * service writes no audit row of its own (see `audit/request-audit.ts`).
     */
    audit?: string;
  }
}

export interface AuthPluginOptions {
  /** Database (pool or PGlite) for device token lookups. */
  db: Queryable;
  /** sha256 hex of the admin token. */
  adminTokenHash: string;
  /** Cache of device token lookups; default a fresh {@link createTokenCache}. `false`: every request asks the database. */
  tokenCache?: TokenCache | false;
  /** API token lookup (the token service's `authenticate`); without it only the admin and device tokens work. */
  apiTokens?: { authenticate(tokenHash: string): Promise<{ id: number; name: string; scope: AdminScope } | null> } | undefined;
}

const SCOPE_RANK: Record<AdminScope, number> = { viewer: 0, operator: 1, admin: 2 };

/** True when `has` covers `needs`. */
export function scopeCovers(has: AdminScope, needs: AdminScope): boolean {
  return SCOPE_RANK[has] >= SCOPE_RANK[needs];
}

/** The scope a request with `method` needs on a route with `config` (the default is described in the module comment). */
export function requiredScope(method: string, config: { scope?: AdminScope | undefined } | undefined): AdminScope {
  if (config?.scope !== undefined) return config.scope;
  return method === 'GET' || method === 'HEAD' ? 'viewer' : 'admin';
}

/** Longest time a device token lookup is reused, ms, when no notification ended it sooner (see the module comment). */
export const DEVICE_TOKEN_CACHE_MS = 60_000;

/** Device token → device uuid, each entry valid {@link DEVICE_TOKEN_CACHE_MS} from its lookup or until forgotten. */
export interface TokenCache {
  /** The device of this token, if looked up less than the TTL ago and not forgotten since. */
  get(token: string): string | undefined;
  /** A stamp to take before a lookup: {@link set} with it stores nothing if a device was forgotten meanwhile. */
  stamp(): number;
  set(token: string, deviceUuid: string, stamp: number): void;
  /** Drops every entry of this device (deleted, or its token replaced). */
  forgetDevice(deviceUuid: string): void;
  /** Drops everything (notifications may have been missed). */
  clear(): void;
  size(): number;
}

/**
 * A bounded cache for device token lookups: entries expire `ttlMs` after they were stored (never refreshed by a hit);
 * beyond `max` entries the oldest go first.
 */
export function createTokenCache(o: { ttlMs?: number; max?: number; now?: () => number } = {}): TokenCache {
  const ttlMs = o.ttlMs ?? DEVICE_TOKEN_CACHE_MS;
  const max = o.max ?? 100_000;
  const now = o.now ?? (() => performance.now());
  const entries = new Map<string, { uuid: string; expires: number }>();
  // Bumped by every forget and clear: a lookup that started before one may hold what it removed.
  let generation = 0;
  return {
    get(token) {
      const e = entries.get(token);
      if (e === undefined) return undefined;
      if (now() >= e.expires) {
        entries.delete(token);
        return undefined;
      }
      return e.uuid;
    },
    stamp: () => generation,
    set(token, deviceUuid, stamp) {
      if (ttlMs <= 0 || stamp !== generation) return;
      entries.delete(token); // re-inserted last: the oldest lookups are evicted first
      entries.set(token, { uuid: deviceUuid, expires: now() + ttlMs });
      while (entries.size > max) entries.delete(entries.keys().next().value!);
    },
    forgetDevice(deviceUuid) {
      generation++;
      for (const [token, e] of entries) if (e.uuid === deviceUuid) entries.delete(token);
    },
    clear() {
      generation++;
      entries.clear();
    },
    size: () => entries.size,
  };
}

/** The principal of an authenticated request (throws 401 outside the auth hook's reach). */
export function principalOf(request: FastifyRequest): Principal {
  if (request.principal === null) throw new AppError('UNAUTHORIZED', 'This route needs a bearer token');
  return request.principal;
}

/**
 * The audit `actor` of a principal: `admin` (the bootstrap admin token), `token:<id>:<name>` (an API token),
 * `device:<uuid>`, or `anonymous` (no valid token).
 */
export function actorOf(principal: Principal | null): string {
  if (principal === null) return 'anonymous';
  if (principal.kind === 'device') return `device:${principal.deviceUuid}`;
  return principal.tokenId === undefined ? 'admin' : `token:${principal.tokenId}:${principal.tokenName ?? ''}`;
}

const BEARER_RE = /^Bearer[ ]+([^\s]+)[ ]*$/i;

function unauthorized(message: string): AppError {
  return new AppError('UNAUTHORIZED', message);
}

const authPluginImpl: FastifyPluginAsync<AuthPluginOptions> = async (app, opts) => {
  if (!app.hasRequestDecorator('principal')) app.decorateRequest('principal', null);
  const cache = opts.tokenCache === false ? null : (opts.tokenCache ?? createTokenCache());
  // The admin token's sha256 as bytes, compared in constant time with each request's (null: a malformed hash matches nothing).
  const adminDigest = hashesEqual(opts.adminTokenHash, opts.adminTokenHash) ? Buffer.from(opts.adminTokenHash, 'hex') : null;

  app.addHook('onRoute', (route) => {
    // A device-accessible route without :uuid could not be scoped to the calling device: refuse to start.
    if (route.config?.device === true && !/(^|\/):uuid(\/|$)/.test(route.url)) {
      throw new Error(`route ${route.method} ${route.url} is marked device-accessible but has no :uuid parameter`);
    }
    const declared = route.config?.scope;
    if (declared !== undefined && !ADMIN_SCOPES.includes(declared)) {
      throw new Error(`route ${route.method} ${route.url} declares scope ${JSON.stringify(declared)}; use one of ${ADMIN_SCOPES.join(', ')}`);
    }
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toUpperCase());
    const scopes = new Set(methods.map((m) => requiredScope(m, route.config)));
    if (scopes.size > 1) {
      throw new Error(`route ${methods.join('|')} ${route.url} mixes methods with different default scopes; declare config.scope`);
    }
    // For the OpenAPI document (and docs/http-api.md): @fastify/swagger copies `x-` keys of a route schema.
    route.schema = { ...route.schema, 'x-switchyard-scope': [...scopes][0] } as FastifySchema;
  });

  /** 403 unless the admin-API principal's scope covers the route's. */
  const checkScope = (request: FastifyRequest, scope: AdminScope): void => {
    const needs = requiredScope(request.method, request.routeOptions.config);
    if (!scopeCovers(scope, needs)) {
      throw new AppError('FORBIDDEN', `${request.method} on this route needs the ${needs} scope; this token has the ${scope} scope`, {
        requiredScope: needs,
        tokenScope: scope,
      });
    }
  };

  /**
   * Who the request is, and whether that principal may call this route. Synchronous (returns undefined) for the
   * admin token and for a device token the cache knows — every polling device's request — and a promise only when
   * the database must be asked.
   */
  const authenticate = (request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined => {
    const header = request.headers.authorization;
    if (header === undefined || header === '') {
      reply.header('www-authenticate', 'Bearer');
      throw unauthorized('Missing Authorization header: send "Authorization: Bearer <token>"');
    }
    const match = BEARER_RE.exec(header);
    if (!match?.[1]) {
      reply.header('www-authenticate', 'Bearer');
      throw unauthorized('The Authorization header must be "Bearer <token>"');
    }
    const token = match[1];
    const isDeviceToken = token.startsWith(DEVICE_TOKEN_PREFIX);
    if (isDeviceToken) {
      // Every polling device's request: no hash, no query (only device tokens that failed the admin check are stored).
      const cached = cache?.get(token);
      if (cached !== undefined) return admitDevice(request, cached);
    }
    const digest = oneShotHash('sha256', token, 'buffer');
    if (adminDigest !== null && timingSafeEqual(digest, adminDigest)) {
      request.principal = { kind: 'admin', scope: 'admin' };
      return undefined;
    }
    return authenticateSlow(request, reply, token, digest.toString('hex'), isDeviceToken);
  };

  const authenticateSlow = async (request: FastifyRequest, reply: FastifyReply, token: string, hash: string, isDeviceToken: boolean): Promise<void> => {
    if (!isDeviceToken && opts.apiTokens) {
      const apiToken = await opts.apiTokens.authenticate(hash);
      if (apiToken !== null) {
        request.principal = { kind: 'admin', scope: apiToken.scope, tokenId: apiToken.id, tokenName: apiToken.name };
        checkScope(request, apiToken.scope);
        return;
      }
    }
    const stamp = cache?.stamp() ?? 0;
    const device = await findDeviceByTokenHash(opts.db, hash);
    if (device === null) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      throw unauthorized('The bearer token is not valid (unknown, rotated or revoked)');
    }
    if (isDeviceToken) cache?.set(token, device.uuid, stamp);
    admitDevice(request, device.uuid);
  };

  /** A device principal reaches only device-accessible routes, and only for its own uuid. */
  const admitDevice = (request: FastifyRequest, deviceUuid: string): undefined => {
    request.principal = { kind: 'device', deviceUuid };
    if (request.routeOptions.config.device !== true) {
      throw new AppError('FORBIDDEN', 'A device token may not call this route; it needs an admin token');
    }
    const params = request.params as Record<string, unknown> | undefined;
    if (params?.uuid !== deviceUuid) {
      throw new AppError('FORBIDDEN', "A device token may only reach its own device's resources");
    }
    return undefined;
  };

  // A callback hook rather than an `async` one: the common cases finish without a promise or a microtask.
  app.addHook('onRequest', (request, reply, done) => {
    let pending: Promise<void> | undefined;
    try {
      pending = authenticate(request, reply);
    } catch (err) {
      done(err as Error);
      return;
    }
    if (pending === undefined) done();
    else pending.then(() => done(), (err: unknown) => done(err as Error));
  });
};

// Like fastify-plugin's `skip-override`: the hooks apply to the context that registers the plugin
// (the /api/v1 scope), not to a child context of their own.
(authPluginImpl as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;

export const authPlugin = authPluginImpl;
