/**
 * Audit rows the HTTP layer writes (the services write the rows of the changes they make, in their transactions):
 *
 * - every mutating request (not GET/HEAD/OPTIONS) answered with 4xx or 5xx — refused by authentication, scope,
 *   validation or a rule, or failed: `action` `request.refused` (4xx) or `request.failed` (5xx), `outcome`
 *   `error`, the actor (`anonymous` without a valid token), the target taken from the path parameters, and in
 *   `details` the method, the route pattern (never the raw URL), the status and the error code. Never a body,
 *   a header or a query string: they may hold secrets;
 * - a successful request by an admin-API token on a route marked `config: { audit: '<action>' }`, for routes
 *   whose service writes no row of its own (shadow writes and deletes over HTTP). Written after the answer,
 *   not in the change's transaction: a crash in between loses that row.
 *
 * Refusals are rate-limited per actor and in all (token buckets), so a flood of bad requests cannot turn into a
 * flood of database writes; what is dropped is counted and logged (one warning per interval).
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { actorOf } from '../auth/auth.plugin.ts';
import type { Queryable } from '../db/db.ts';
import type { Logger } from '../log.ts';
import { insertAudit, type AuditEntry } from './audit.store.ts';

export interface RequestAuditOptions {
  db: Queryable;
  log: Logger;
  /** Refusal rows per second per actor (burst: 4×). Default 5. */
  perActorPerSecond?: number;
  /** Refusal rows per second in all (burst: 2×). Default 100. */
  totalPerSecond?: number;
  /** Clock for the buckets, ms. Default `performance.now`. */
  now?: () => number;
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** First path segment after `/api/v1/` → target type. */
const TYPE_OF_SEGMENT: Record<string, string> = { brokers: 'broker', devices: 'device', tokens: 'token', migrations: 'migration', jobs: 'job', audit: 'audit', events: 'events' };

/** Path parameter values that may go into a row as they are; anything else is recorded as null. */
const SAFE_ID = /^[A-Za-z0-9:_.$-]{1,128}$/;

/** The target of a request, from its route pattern and its (raw, possibly hostile) path parameters. */
export function targetOf(route: string | undefined, params: unknown): { targetType: string; targetId: string | null } {
  const p = (params !== null && typeof params === 'object' ? params : {}) as Record<string, unknown>;
  const safe = (v: unknown): string | null => (typeof v === 'string' && SAFE_ID.test(v) ? v : typeof v === 'number' && Number.isSafeInteger(v) ? String(v) : null);
  if (p.uuid !== undefined) return { targetType: 'device', targetId: safe(p.uuid) };
  if (p.jobId !== undefined) return { targetType: 'job', targetId: safe(p.jobId) };
  const segment = route?.split('/')[3];
  const targetType = segment === undefined ? 'unknown' : (TYPE_OF_SEGMENT[segment] ?? 'unknown');
  return { targetType, targetId: p.id !== undefined ? safe(p.id) : null };
}

/**
 * A token bucket per key (`perKey`/s, burst 4×) plus one for all keys (`total`/s, burst 2×): `allow(key)` takes a
 * token from both or returns false. At most 10,000 keys are tracked (the oldest are forgotten).
 */
export function createRefusalLimiter(perKey: number, total: number, now: () => number): (key: string) => boolean {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const all = { tokens: total * 2, at: now() };
  const refill = (b: { tokens: number; at: number }, rate: number, cap: number, t: number): void => {
    b.tokens = Math.min(cap, b.tokens + ((t - b.at) / 1000) * rate);
    b.at = t;
  };
  return (key: string): boolean => {
    const t = now();
    let b = buckets.get(key);
    if (!b) {
      b = { tokens: perKey * 4, at: t };
      buckets.set(key, b);
      if (buckets.size > 10_000) buckets.delete(buckets.keys().next().value!);
    }
    refill(b, perKey, perKey * 4, t);
    refill(all, total, total * 2, t);
    if (b.tokens < 1 || all.tokens < 1) return false;
    b.tokens -= 1;
    all.tokens -= 1;
    return true;
  };
}

const errorCodes = new WeakMap<FastifyRequest, string>();
const CODE_RE = /"code":"([A-Z_]{1,64})"/;

const requestAuditImpl: FastifyPluginAsync<RequestAuditOptions> = async (app, opts) => {
  const log = opts.log.child({ component: 'request-audit' });
  const now = opts.now ?? (() => performance.now());
  const allow = createRefusalLimiter(opts.perActorPerSecond ?? 5, opts.totalPerSecond ?? 100, now);
  let dropped = 0;
  let lastWarn = -Infinity;

  // The catalogue code of an error answer (the body is the error handler's `{error, message, code}`).
  // Both hooks callback style: they run on every request, and reads (most of them) leave at once.
  app.addHook('onSend', (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
    if (reply.statusCode >= 400 && !READ_METHODS.has(request.method) && typeof payload === 'string' && payload.length < 65_536) {
      const code = CODE_RE.exec(payload)?.[1];
      if (code !== undefined) errorCodes.set(request, code);
    }
    done(null, payload);
  });

  app.addHook('onResponse', (request, reply, done) => {
    if (READ_METHODS.has(request.method)) return done();
    record(request, reply).then(() => done(), done);
  });

  async function record(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const status = reply.statusCode;
    const principal = request.principal;
    const route = request.routeOptions.url;
    let entry: AuditEntry;
    if (status < 400) {
      const action = request.routeOptions.config.audit;
      if (action === undefined || principal?.kind !== 'admin') return;
      entry = { actor: actorOf(principal), action, ...targetOf(route, request.params), outcome: 'ok', details: { ...routeDetails(request), status } };
    } else {
      const actor = actorOf(principal);
      if (!allow(actor)) {
        dropped += 1;
        const t = now();
        if (t - lastWarn >= 10_000) {
          log.warn({ dropped }, 'refused requests are arriving faster than the audit log records them; these were not recorded');
          lastWarn = t;
          dropped = 0;
        }
        return;
      }
      const code = errorCodes.get(request);
      entry = {
        actor,
        action: status >= 500 ? 'request.failed' : 'request.refused',
        ...targetOf(route, request.params),
        outcome: 'error',
        details: { method: request.method, route: route ?? null, status, ...(code !== undefined ? { code } : {}) },
      };
    }
    try {
      await insertAudit(opts.db, entry);
    } catch (err) {
      log.warn({ err, action: entry.action, status }, 'could not write the audit row of a request; it is lost');
    }
  }
};

/** What a success row of a `config.audit` route records beside the target: the route and the shadow name. */
function routeDetails(request: FastifyRequest): Record<string, unknown> {
  const p = request.params as Record<string, unknown>;
  return { method: request.method, route: request.routeOptions.url ?? null, ...(typeof p?.name === 'string' ? { shadowName: p.name } : {}) };
}

// Like the auth plugin: the hooks apply to the context that registers it (the /api/v1 scope).
(requestAuditImpl as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;

export const requestAuditPlugin = requestAuditImpl;
