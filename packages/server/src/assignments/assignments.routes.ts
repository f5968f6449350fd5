/**
 * Broker assignment and migrations:
 * `PUT /devices/:uuid/broker`, `GET /devices/:uuid/migrations`, `GET /migrations`, `GET /migrations/:id`,
 * and the device's own `GET /devices/:uuid/config` (ETag / If-None-Match, `?wait=N` long-poll).
 */
import type { FastifyPluginAsync, FastifyReply } from 'fastify';
import { actorOf, principalOf } from '../auth/auth.plugin.ts';
import { errorResponses, idSchema, pagingQuery } from '../http/schemas.ts';
import { deviceUuidSchema } from '../devices/devices.routes.ts';
import { MIGRATION_STATUSES, type AssignmentChannel, type MigrationStatus } from './assignments.store.ts';
import type { AssignmentService } from './assignment.service.ts';
import type { DeviceConfig, DeviceConfigService } from './device-config.ts';
import { configEtag, etagMatches } from '../http/config-fast-path.ts';
import type { ConfigWatch } from './config-watch.ts';

export interface AssignmentRoutesOptions {
  assignments: AssignmentService;
  deviceConfig: DeviceConfigService;
  /** Channels this server accepts in `PUT /devices/:uuid/broker`. */
  channels: readonly AssignmentChannel[];
  /** Channel used when the request names none. Default the first of `channels`. */
  defaultChannel?: AssignmentChannel;
  /** Long-poll waiters of the config endpoint; without it `?wait` answers at once. */
  configWatch?: ConfigWatch;
}

/** Longest `?wait` of the config endpoint, seconds. */
export const MAX_CONFIG_WAIT_S = 60;

const etagOf = configEtag;

/**
 * {@link answerConfig} for a handler that is not `async`: sends. Returns nothing — a handler that returns the reply
 * hands Fastify a thenable, which then waits for the response to finish (an end-of-stream listener per request).
 */
function sendConfig(reply: FastifyReply, inm: string | string[] | undefined, config: DeviceConfig): undefined {
  const answer = answerConfig(reply, inm, config);
  if (answer !== reply) reply.send(answer);
  return undefined;
}

/** 304 without a body when `If-None-Match` matches, else the config; both with the ETag. */
function answerConfig(reply: FastifyReply, inm: string | string[] | undefined, config: DeviceConfig): FastifyReply | DeviceConfig {
  const etag = etagOf(config);
  reply.header('etag', etag).header('cache-control', 'no-cache');
  return etagMatches(inm, etag) ? reply.code(304).send() : config;
}

const tags = ['assignments'];
const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: deviceUuidSchema }, additionalProperties: false } as const;
const paging = {
  ...pagingQuery,
} as const;

export const assignmentRoutes: FastifyPluginAsync<AssignmentRoutesOptions> = async (app, { assignments, deviceConfig, channels, defaultChannel, configWatch }) => {
  const fallbackChannel = defaultChannel ?? channels[0]!;
  app.put<{ Params: { uuid: string }; Body: { brokerId: number; channel?: AssignmentChannel } }>(
    '/devices/:uuid/broker',
    {
      config: { scope: 'operator' },
      schema: {
        tags,
        summary: 'Assign a device to a broker (the device moves make-before-break and reports back)',
        params: uuidParams,
        body: {
          type: 'object',
          required: ['brokerId'],
          properties: {
            brokerId: { ...idSchema, description: 'Target broker (must exist and be active)' },
            channel: {
              type: 'string',
              enum: [...channels],
              description: `How the device is told: shadow (delta), command (MQTT command with acks), job (device job), poll (nothing sent; the device's config poll finds it). Default ${fallbackChannel} (SWITCHYARD_DEFAULT_CHANNEL)`,
            },
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403, 404, 409, 413, 415),
      },
    },
    async (req) => {
      const principal = principalOf(req);
      try {
        return await assignments.assign(req.params.uuid, req.body.brokerId, { channel: req.body.channel ?? fallbackChannel, actor: actorOf(principal) });
      } finally {
        deviceConfig.forget(req.params.uuid); // committed (or not): this instance's next read sees it, NOTIFY or not
      }
    },
  );

  app.get<{ Params: { uuid: string }; Querystring: { limit: number; offset: number; status?: MigrationStatus } }>(
    '/devices/:uuid/migrations',
    {
      schema: {
        tags,
        summary: 'Migrations of one device, newest first',
        params: uuidParams,
        querystring: { type: 'object', properties: { ...paging, status: { type: 'string', enum: [...MIGRATION_STATUSES] } }, additionalProperties: false },
        response: errorResponses(400, 403),
      },
    },
    async (req) => assignments.list({ deviceUuid: req.params.uuid, limit: req.query.limit, offset: req.query.offset, ...(req.query.status ? { status: req.query.status } : {}) }),
  );

  app.get<{ Querystring: { limit: number; offset: number; status?: MigrationStatus; deviceUuid?: string; brokerId?: number } }>(
    '/migrations',
    {
      schema: {
        tags,
        summary: 'All migrations, newest first (filter by status, device, broker)',
        querystring: {
          type: 'object',
          properties: {
            ...paging,
            status: { type: 'string', enum: [...MIGRATION_STATUSES] },
            deviceUuid: deviceUuidSchema,
            brokerId: { ...idSchema, description: 'Migrations from or to this broker' },
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403),
      },
    },
    async (req) => {
      const q = req.query;
      return assignments.list({
        limit: q.limit,
        offset: q.offset,
        ...(q.status ? { status: q.status } : {}),
        ...(q.deviceUuid ? { deviceUuid: q.deviceUuid } : {}),
        ...(q.brokerId ? { brokerId: q.brokerId } : {}),
      });
    },
  );

  app.get<{ Params: { id: number } }>(
    '/migrations/:id',
    {
      schema: {
        tags,
        summary: 'One migration',
        params: { type: 'object', required: ['id'], properties: { id: idSchema }, additionalProperties: false },
        response: errorResponses(400, 403, 404),
      },
    },
    async (req) => assignments.get(req.params.id),
  );

  app.get<{ Params: { uuid: string }; Querystring: { wait?: number } }>(
    '/devices/:uuid/config',
    {
      config: { device: true },
      schema: {
        tags: ['devices'],
        summary: 'The broker a device should use (device token or admin token; ETag + If-None-Match; ?wait=N long-polls)',
        params: uuidParams,
        querystring: {
          type: 'object',
          properties: {
            wait: {
              type: 'integer',
              minimum: 0,
              maximum: MAX_CONFIG_WAIT_S,
              description: `Long-poll: while If-None-Match still matches, hold the answer until the config changes or this many seconds pass (then 304). 0–${MAX_CONFIG_WAIT_S}`,
            },
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403, 404, 429),
      },
    },
    (req, reply) => {
      const uuid = req.params.uuid;
      const inm = req.headers['if-none-match'];
      const waitMs = (req.query.wait ?? 0) * 1000;
      if (waitMs === 0 || !configWatch || typeof inm !== 'string') {
        // The hot path (every polling device): answered synchronously from the in-memory copy when there is one.
        const cached = deviceConfig.cached(uuid);
        if (cached !== undefined) return sendConfig(reply, inm, cached);
        return deviceConfig.get(uuid).then((config) => sendConfig(reply, inm, config));
      }
      return longPoll(reply, configWatch, uuid, inm, waitMs);
    },
  );

  /** `?wait=N` with an `If-None-Match`: hold the answer until the config changes or the time is up. */
  async function longPoll(reply: FastifyReply, watch: ConfigWatch, uuid: string, inm: string, waitMs: number): Promise<FastifyReply | DeviceConfig> {
    // The client going away ends the wait (ServerResponse 'close' before the answer was written).
    const gone = new AbortController();
    const onClose = (): void => {
      if (!reply.raw.writableFinished) gone.abort();
    };
    reply.raw.once('close', onClose);
    const deadline = Date.now() + waitMs;
    try {
      for (;;) {
        // Register before reading: a commit between the read and the registration still wakes us.
        const waiter = watch.wait(uuid, Math.max(0, deadline - Date.now()), gone.signal);
        let config: DeviceConfig;
        try {
          config = await deviceConfig.get(uuid, { fresh: true });
        } catch (err) {
          waiter.cancel();
          throw err;
        }
        if (!etagMatches(inm, etagOf(config))) {
          waiter.cancel();
          return answerConfig(reply, inm, config);
        }
        const outcome = await waiter.done;
        if (outcome === 'aborted') return reply.code(304).send(); // nobody listens; keep it cheap
        // Woken by a change (re-check: it may not touch this ETag) or out of time / shutting down: one last read,
        // which also covers a NOTIFY lost while the LISTEN connection was down.
        if (outcome !== 'changed' || Date.now() >= deadline) return answerConfig(reply, inm, await deviceConfig.get(uuid, { fresh: true }));
      }
    } finally {
      reply.raw.off('close', onClose);
    }
  }
};
