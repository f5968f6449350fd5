/**
 * An HTTP app on a real database for `app.inject` tests: migrated schema, a random secret-box key, an admin token,
 * a broker-pool port whose status the test sets, and every log line captured (to prove no secret is logged).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { FastifyInstance, FastifyPluginAsync, LightMyRequestResponse } from 'fastify';
import { ADMIN_TOKEN_PREFIX, generateToken, hashToken } from '../../src/auth/tokens.ts';
import { loadConfig } from '../../src/config.ts';
import { createSecretBox, type SecretBox } from '../../src/crypto/secret-box.ts';
import type { Db } from '../../src/db/db.ts';
import { ERROR_CATALOGUE, type ErrorCode } from '../../src/errors.ts';
import { buildServer, type BrokerPoolStatus } from '../../src/http/app.ts';
import { createLogger } from '../../src/log.ts';

export interface Harness {
  app: FastifyInstance;
  db: Db;
  secretBox: SecretBox;
  adminToken: string;
  /** Every log line written so far (JSON text). */
  logLines: string[];
  /** How often the brokers service called `onChange`. */
  changes: { count: number };
  /** What the broker pool port reports; tests set it. */
  poolStatus: BrokerPoolStatus[];
  /** `app.inject` with JSON body and the admin token by default (`token: null` sends none). */
  call(method: string, url: string, opts?: { body?: unknown; token?: string | null; headers?: Record<string, string>; payload?: string | Buffer }): Promise<LightMyRequestResponse>;
}

export async function createHarness(db: Db, opts: { plugins?: Array<{ plugin: FastifyPluginAsync<any>; opts?: object }> } = {}): Promise<Harness> {
  const logLines: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (line: string) => void logLines.push(line) } });
  const secretBox = createSecretBox(randomBytes(32));
  const adminToken = generateToken(ADMIN_TOKEN_PREFIX);
  const changes = { count: 0 };
  const poolStatus: BrokerPoolStatus[] = [];
  const app = await buildServer({
    db,
    log,
    config: loadConfig({}),
    adminTokenHash: hashToken(adminToken),
    secretBox,
    brokerPool: { status: () => poolStatus, refresh: async () => undefined },
    onBrokersChange: () => {
      changes.count += 1;
    },
    plugins: opts.plugins,
  });
  await app.ready();
  return {
    app,
    db,
    secretBox,
    adminToken,
    logLines,
    changes,
    poolStatus,
    call(method, url, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      const token = o.token === undefined ? adminToken : o.token;
      if (token !== null) headers.authorization = `Bearer ${token}`;
      if (o.body !== undefined) {
        headers['content-type'] ??= 'application/json';
        return app.inject({ method: method as 'GET', url, headers, payload: JSON.stringify(o.body) });
      }
      if (o.payload !== undefined) return app.inject({ method: method as 'GET', url, headers, payload: o.payload });
      return app.inject({ method: method as 'GET', url, headers });
    },
  };
}

/** Asserts the error answer: status, catalogue code, `{ error, message, code }` shape, and a message fragment. */
export function assertError(res: LightMyRequestResponse, status: number, code: ErrorCode, messageIncludes?: string | RegExp): Record<string, unknown> {
  const body = res.json() as Record<string, unknown>;
  assert.equal(res.statusCode, status, `expected ${status} ${code}, got ${res.statusCode}: ${res.body}`);
  assert.equal(body.code, code, res.body);
  assert.equal(ERROR_CATALOGUE[code].status, status);
  assert.equal(body.error, STATUS_CODES[status]);
  assert.equal(typeof body.message, 'string');
  assert.ok((body.message as string).length > 0);
  assert.match(String(res.headers['content-type']), /^application\/json/);
  if (typeof messageIncludes === 'string') assert.ok((body.message as string).includes(messageIncludes), `message "${String(body.message)}" should include "${messageIncludes}"`);
  else if (messageIncludes instanceof RegExp) assert.match(body.message as string, messageIncludes);
  return body;
}
