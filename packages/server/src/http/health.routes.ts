/**
 * Public probes: `/healthz` (the process answers) and `/readyz` (the database answers `select 1` and every
 * active broker is connected in the pool). `/readyz` also says which brokers' request subscriptions this
 * instance owns (`owner`); a standby instance is ready all the same. Neither needs a token; neither reveals a secret.
 */
import type { FastifyPluginAsync } from 'fastify';
import { listActiveBrokers } from '../brokers/brokers.store.ts';
import type { Queryable } from '../db/db.ts';
import { AppError } from '../errors.ts';
import { errorSchema } from './schemas.ts';

/** One broker connection as the pool reports it. */
export interface BrokerPoolStatus {
  brokerId: number;
  name: string;
  connected: boolean;
  /** This instance owns the broker's request subscriptions. */
  owner: boolean;
  lastError?: string;
}

/** The part of the broker pool the HTTP layer uses. */
export interface BrokerPoolView {
  status(): BrokerPoolStatus[];
  refresh(): Promise<void>;
}

export interface HealthRoutesOptions {
  db: Queryable;
  brokerPool?: BrokerPoolView | undefined;
  /** How long `select 1` may take before the database counts as down, ms. Default 2000. */
  dbTimeoutMs?: number;
}

interface BrokerCheck {
  brokerId: number;
  name: string;
  connected: boolean;
  owner: boolean;
  error?: string;
}

const checksSchema = {
  database: { type: 'string', enum: ['ok', 'failed'] },
  databaseError: { type: 'string' },
  brokers: {
    type: 'array',
    items: {
      type: 'object',
      properties: {
        brokerId: { type: 'integer' },
        name: { type: 'string' },
        connected: { type: 'boolean' },
        owner: { type: 'boolean', description: "this instance owns the broker's request subscriptions (one instance per broker)" },
        error: { type: 'string' },
      },
    },
  },
} as const;

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export const healthRoutes: FastifyPluginAsync<HealthRoutesOptions> = async (app, opts) => {
  const dbTimeoutMs = opts.dbTimeoutMs ?? 2000;

  app.get(
    '/healthz',
    {
      schema: {
        tags: ['health'],
        summary: 'Liveness: the process answers',
        security: [],
        response: { 200: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' } } } },
      },
    },
    async () => ({ status: 'ok' as const }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: the database answers and every active broker is connected',
        security: [],
        response: {
          200: { type: 'object', required: ['status'], properties: { status: { type: 'string', const: 'ok' }, ...checksSchema } },
          503: { ...errorSchema, properties: { ...errorSchema.properties, ...checksSchema } },
        },
      },
    },
    async (request) => {
      let database: 'ok' | 'failed' = 'ok';
      let databaseError: string | undefined;
      let active: Array<{ id: number; name: string }> = [];
      try {
        await withTimeout(opts.db.query('SELECT 1'), dbTimeoutMs, 'the database');
        if (opts.brokerPool !== undefined) active = await withTimeout(listActiveBrokers(opts.db), dbTimeoutMs, 'the database');
      } catch (err) {
        database = 'failed';
        // The driver's message may name hosts or users: log it, answer a generic sentence.
        databaseError = (err as Error).message.includes('did not answer') ? (err as Error).message : 'the database query failed';
        request.log.warn({ err }, 'readiness: database check failed');
      }

      const brokers: BrokerCheck[] = [];
      if (opts.brokerPool !== undefined && database === 'ok') {
        const pool = new Map(opts.brokerPool.status().map((s) => [s.brokerId, s]));
        for (const b of active) {
          const s = pool.get(b.id);
          const check: BrokerCheck = { brokerId: b.id, name: b.name, connected: s?.connected === true, owner: s?.owner === true };
          if (s === undefined) check.error = 'not in the broker pool yet';
          else if (!s.connected) check.error = s.lastError ?? 'not connected';
          brokers.push(check);
        }
      }

      const down = brokers.filter((b) => !b.connected);
      if (database === 'failed' || down.length > 0) {
        const parts: string[] = [];
        if (database === 'failed') parts.push(`database: ${databaseError ?? 'failed'}`);
        if (down.length > 0) parts.push(`broker${down.length === 1 ? '' : 's'} not connected: ${down.map((b) => `${b.name} (#${b.brokerId})`).join(', ')}`);
        const details: Record<string, unknown> = { database, brokers };
        if (databaseError !== undefined) details.databaseError = databaseError;
        throw new AppError('NOT_READY', `Not ready: ${parts.join('; ')}`, details);
      }
      return { status: 'ok' as const, database, brokers };
    },
  );
};
