/**
 * API tokens with scopes (admin, operator, viewer) for people and tools on the admin API.
 *
 * - `create` generates the token (prefix by scope, see `auth/tokens.ts`), stores its sha256 and answers the token
 *   once; `list` and every other answer carry no secret and no hash.
 * - `revoke` sets `revoked_at`; the auth hook looks active tokens up on every request (no cache), so the next
 *   request with a revoked token gets 401 on every instance.
 * - `authenticate` is the auth hook's lookup; it records `last_used_at` at most once a minute per token.
 * Every change writes an audit row (name and scope, never the token) in its transaction.
 */
import { insertAudit } from '../audit/audit.store.ts';
import { apiTokenPrefix, generateToken, hashToken } from '../auth/tokens.ts';
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import {
  findActiveTokenByHash,
  getApiToken,
  insertApiToken,
  listApiTokens,
  revokeApiToken,
  touchApiToken,
  type ApiTokenRow,
  type ApiTokenScope,
} from './tokens.store.ts';

export { API_TOKEN_SCOPES, type ApiTokenScope } from './tokens.store.ts';

/** A token as the API lists it: never the secret, never its hash. */
export interface ApiToken {
  id: number;
  name: string;
  scope: ApiTokenScope;
  createdAt: string;
  createdBy: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
  revokedBy: string | null;
}

/** The answer to `create`: the only time the token is shown. */
export interface CreatedApiToken {
  id: number;
  name: string;
  scope: ApiTokenScope;
  token: string;
  createdAt: string;
  createdBy: string;
}

export interface TokenListQuery {
  /** Also list revoked tokens (default false). */
  includeRevoked: boolean;
  /** Page size, 1–500. */
  limit: number;
  offset: number;
}

/** What the auth hook needs of a valid API token. */
export interface AuthenticatedToken {
  id: number;
  name: string;
  scope: ApiTokenScope;
}

export interface TokenServiceDeps {
  db: Db;
  log: Logger;
  /** `last_used_at` is written at most this often per token, seconds (default 60). */
  touchIntervalS?: number;
}

const toApiToken = (r: ApiTokenRow): ApiToken => ({
  id: r.id,
  name: r.name,
  scope: r.scope,
  createdAt: r.created_at.toISOString(),
  createdBy: r.created_by,
  lastUsedAt: r.last_used_at === null ? null : r.last_used_at.toISOString(),
  revokedAt: r.revoked_at === null ? null : r.revoked_at.toISOString(),
  revokedBy: r.revoked_by,
});

export function createTokenService(deps: TokenServiceDeps) {
  const { db } = deps;
  const log = deps.log.child({ component: 'api-tokens' });
  const touchIntervalS = deps.touchIntervalS ?? 60;

  return {
    async create(input: { name: string; scope: ApiTokenScope }, actor: string): Promise<CreatedApiToken> {
      const token = generateToken(apiTokenPrefix(input.scope));
      const row = await db.transaction(async (tx) => {
        const r = await insertApiToken(tx, { name: input.name, scope: input.scope, tokenHash: hashToken(token), createdBy: actor });
        await insertAudit(tx, { actor, action: 'token.create', targetType: 'token', targetId: String(r.id), details: { name: r.name, scope: r.scope } });
        return r;
      });
      log.info({ tokenId: row.id, scope: row.scope, actor }, 'API token created');
      return { id: row.id, name: row.name, scope: row.scope, token, createdAt: row.created_at.toISOString(), createdBy: row.created_by };
    },

    async list(q: TokenListQuery): Promise<{ items: ApiToken[]; total: number; limit: number; offset: number }> {
      const { rows, total } = await listApiTokens(db, q);
      return { items: rows.map(toApiToken), total, limit: q.limit, offset: q.offset };
    },

    async get(id: number): Promise<ApiToken> {
      const row = await getApiToken(db, id);
      if (!row) throw new AppError('TOKEN_NOT_FOUND', `no API token with id ${id}`);
      return toApiToken(row);
    },

    /**
     * Revokes token `id`. Revoking a token that is already revoked changes nothing and succeeds (DELETE is
     * idempotent); an unknown id is 404 TOKEN_NOT_FOUND.
     */
    async revoke(id: number, actor: string): Promise<void> {
      const revoked = await db.transaction(async (tx) => {
        const current = await getApiToken(tx, id, { lock: true });
        if (!current) throw new AppError('TOKEN_NOT_FOUND', `no API token with id ${id}`);
        const r = await revokeApiToken(tx, id, actor);
        if (r) {
          await insertAudit(tx, { actor, action: 'token.revoke', targetType: 'token', targetId: String(id), details: { name: r.name, scope: r.scope } });
          // At commit, every instance ends the event streams this token opened (requests need no such help).
          await tx.query('SELECT pg_notify($1, $2)', [TOKEN_REVOKED_CHANNEL, String(id)]);
        }
        return r;
      });
      if (revoked) log.info({ tokenId: id, scope: revoked.scope, actor }, 'API token revoked');
    },

    /** The active token of this sha256, or null (unknown or revoked). Asks the database every time. */
    async authenticate(tokenHash: string): Promise<AuthenticatedToken | null> {
      const row = await findActiveTokenByHash(db, tokenHash);
      if (!row) return null;
      const now = Date.now();
      if (row.last_used_at === null || now - row.last_used_at.getTime() >= touchIntervalS * 1000) {
        try {
          await touchApiToken(db, row.id, touchIntervalS);
        } catch (err) {
          // The request is authenticated all the same; last_used_at is a hint, retried on the next use.
          log.warn({ err, tokenId: row.id }, 'could not record the use of an API token; the next request retries');
        }
      }
      return { id: row.id, name: row.name, scope: row.scope };
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;

/** NOTIFY channel carrying the id of every API token revoked (see {@link createRevocationFeed}). */
export const TOKEN_REVOKED_CHANNEL = 'switchyard_token_revoked';

/** Revoked API token ids as they commit, on every instance: one LISTEN, any number of subscribers. */
export interface RevocationFeed {
  subscribe(onRevoked: (tokenId: number) => void): () => void;
  close(): Promise<void>;
}

export async function createRevocationFeed(db: Pick<Db, 'listen'>): Promise<RevocationFeed> {
  const subscribers = new Set<(tokenId: number) => void>();
  const unlisten = await db.listen(TOKEN_REVOKED_CHANNEL, (payload) => {
    const id = Number(payload);
    if (!Number.isSafeInteger(id)) return;
    for (const fn of [...subscribers]) fn(id);
  });
  return {
    subscribe(onRevoked) {
      subscribers.add(onRevoked);
      return () => subscribers.delete(onRevoked);
    },
    close: () => unlisten(),
  };
}
