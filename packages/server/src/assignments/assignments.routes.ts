/**
 * Broker assignment and migrations:
 * `PUT /devices/:uuid/broker`, `GET /devices/:uuid/migrations`, `GET /migrations`, `GET /migrations/:id`,
 * and the device's own `GET /devices/:uuid/config` (ETag / If-None-Match).
 */
import type { FastifyPluginAsync } from 'fastify';
import { actorOf, principalOf } from '../auth/auth.plugin.ts';
import { errorResponses, idSchema } from '../http/schemas.ts';
import { deviceUuidSchema } from '../devices/devices.routes.ts';
import { ASSIGNMENT_CHANNELS, MIGRATION_STATUSES, type AssignmentChannel, type MigrationStatus } from './assignments.store.ts';
import type { AssignmentService } from './assignment.service.ts';
import type { DeviceConfigService } from './device-config.ts';

export interface AssignmentRoutesOptions {
  assignments: AssignmentService;
  deviceConfig: DeviceConfigService;
  /** Channels this server accepts in `PUT /devices/:uuid/broker`. */
  channels: readonly AssignmentChannel[];
}

const tags = ['assignments'];
const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: deviceUuidSchema }, additionalProperties: false } as const;
const paging = {
  limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  offset: { type: 'integer', minimum: 0, maximum: 1_000_000_000, default: 0 },
} as const;

export const assignmentRoutes: FastifyPluginAsync<AssignmentRoutesOptions> = async (app, { assignments, deviceConfig, channels }) => {
  app.put<{ Params: { uuid: string }; Body: { brokerId: number; channel?: AssignmentChannel } }>(
    '/devices/:uuid/broker',
    {
      schema: {
        tags,
        summary: 'Assign a device to a broker (the device moves make-before-break and reports back)',
        params: uuidParams,
        body: {
          type: 'object',
          required: ['brokerId'],
          properties: {
            brokerId: { ...idSchema, description: 'Target broker (must exist and be active)' },
            channel: { type: 'string', enum: [...channels], description: `How the device is told (default ${channels[0]})` },
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403, 404, 409, 413, 415),
      },
    },
    async (req) => {
      const principal = principalOf(req);
      return assignments.assign(req.params.uuid, req.body.brokerId, { channel: req.body.channel ?? channels[0]!, actor: actorOf(principal) });
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

  app.get<{ Params: { uuid: string } }>(
    '/devices/:uuid/config',
    {
      config: { device: true },
      schema: {
        tags: ['devices'],
        summary: 'The broker a device should use (device token or admin token; ETag + If-None-Match)',
        params: uuidParams,
        response: errorResponses(400, 403, 404),
      },
    },
    async (req, reply) => {
      const config = await deviceConfig.get(req.params.uuid);
      const etag = `"${config.version}.${config.mqtt?.brokerId ?? 0}"`;
      reply.header('etag', etag).header('cache-control', 'no-cache');
      const inm = req.headers['if-none-match'];
      if (typeof inm === 'string' && inm.split(',').some((t) => t.trim() === etag || t.trim() === `W/${etag}`)) {
        return reply.code(304).send();
      }
      return config;
    },
  );
};
