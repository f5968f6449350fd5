/**
 * `/api/v1/devices`: validates and maps; the rules live in {@link DeviceService}.
 * `GET /devices/:uuid` is device-accessible (a device may read its own record); the rest is admin only.
 */
import type { FastifyPluginAsync } from 'fastify';
import { DEVICE_UUID_RE } from '@switchyard/protocol';
import { actorOf } from '../auth/auth.plugin.ts';
import { errorResponses, idSchema, timestampSchema, pagingQuery, pageSchema } from '../http/schemas.ts';
import type { DeviceService, NewDevice } from './devices.service.ts';

export interface DeviceRoutesOptions {
  service: DeviceService;
}

/** Device uuid in a body or path (the same rule as the MQTT topics: no `/ + # $`). */
export const deviceUuidSchema = {
  type: 'string',
  pattern: DEVICE_UUID_RE.source,
  description: "1–128 characters of A–Z, a–z, 0–9, ':', '_' and '-'",
} as const;

const noControl = '[^\\x00-\\x1f\\x7f]';

const createBody = {
  type: 'object',
  properties: {
    uuid: deviceUuidSchema,
    name: { type: ['string', 'null'], minLength: 1, maxLength: 200, pattern: `^${noControl}*$`, description: 'a display name of 1–200 characters without control characters' },
    brokerId: { ...idSchema, description: 'Broker to assign the device to (must exist and be active)' },
  },
  additionalProperties: false,
} as const;

const deviceProperties = {
  uuid: { type: 'string' },
  name: { type: ['string', 'null'] },
  brokerId: { type: ['integer', 'null'], description: 'Assigned broker' },
  connectedBrokerId: { type: ['integer', 'null'], description: 'Broker the device last reported being connected to' },
  online: { type: 'boolean' },
  lastSeenAt: { type: ['string', 'null'], format: 'date-time' },
  createdAt: timestampSchema,
  updatedAt: timestampSchema,
} as const;

const deviceRequired = ['uuid', 'name', 'brokerId', 'connectedBrokerId', 'online', 'lastSeenAt', 'createdAt', 'updatedAt'];

const deviceSchema = { type: 'object', required: deviceRequired, properties: deviceProperties, additionalProperties: false } as const;

const registeredSchema = {
  type: 'object',
  required: [...deviceRequired, 'token'],
  properties: { ...deviceProperties, token: { type: 'string', description: 'The device credential; shown only in this answer' } },
  additionalProperties: false,
} as const;

const rotatedSchema = {
  type: 'object',
  required: [...deviceRequired, 'token', 'brokers'],
  properties: {
    ...deviceProperties,
    token: { type: 'string', description: 'The new device credential; shown only in this answer. The old one no longer works.' },
    brokers: {
      type: 'array',
      description:
        'Brokers that hold an account of the device (provisioner mosquitto-dynsec). `provisioned`: the new token works there and the old one does not; `pending`/`failed`: the broker did not take it yet (it is retried; `error` says why).',
      items: {
        type: 'object',
        required: ['brokerId', 'action', 'state', 'error', 'updatedAt'],
        properties: {
          brokerId: { type: 'integer' },
          action: { type: 'string', enum: ['provision', 'deprovision'] },
          state: { type: 'string', enum: ['pending', 'provisioned', 'removed', 'failed'] },
          error: { type: ['string', 'null'] },
          updatedAt: timestampSchema,
        },
        additionalProperties: false,
      },
    },
  },
  additionalProperties: false,
} as const;

const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: deviceUuidSchema }, additionalProperties: false } as const;

const listQuery = {
  type: 'object',
  properties: {
    ...pagingQuery,
    brokerId: { ...idSchema, description: 'Only devices assigned to this broker' },
  },
  additionalProperties: false,
} as const;

const tags = ['devices'];

export const deviceRoutes: FastifyPluginAsync<DeviceRoutesOptions> = async (app, { service }) => {
  app.post<{ Body: NewDevice | undefined }>(
    '/devices',
    {
      schema: {
        tags,
        summary: 'Register a device (the answer holds its token, shown only once)',
        body: createBody,
        response: { 201: registeredSchema, ...errorResponses(400, 403, 404, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const device = await service.create(request.body ?? {}, actorOf(request.principal));
      return reply
        .code(201)
        .header('location', `/api/v1/devices/${encodeURIComponent(device.uuid)}`)
        .header('cache-control', 'no-store')
        .send(device);
    },
  );

  app.get<{ Querystring: { limit: number; offset: number; brokerId?: number } }>(
    '/devices',
    {
      schema: {
        tags,
        summary: 'List devices (paged, oldest first)',
        querystring: listQuery,
        response: {
          200: pageSchema(deviceSchema),
          ...errorResponses(400, 403),
        },
      },
    },
    async (request) => service.list(request.query),
  );

  app.get<{ Params: { uuid: string } }>(
    '/devices/:uuid',
    {
      config: { device: true },
      schema: { tags, summary: 'Get a device (also with its own device token)', params: uuidParams, response: { 200: deviceSchema, ...errorResponses(400, 403, 404) } },
    },
    async (request) => service.get(request.params.uuid),
  );

  app.post<{ Params: { uuid: string } }>(
    '/devices/:uuid/token',
    {
      schema: {
        tags,
        summary: 'Rotate the device token: a new one is returned (only here); the old one stops working on the API and on every broker',
        params: uuidParams,
        response: { 200: rotatedSchema, ...errorResponses(400, 403, 404) },
      },
    },
    async (request, reply) => {
      const rotated = await service.rotateToken(request.params.uuid, actorOf(request.principal));
      return reply.header('cache-control', 'no-store').send(rotated);
    },
  );

  app.delete<{ Params: { uuid: string } }>(
    '/devices/:uuid',
    {
      schema: {
        tags,
        summary: 'Delete a device and its shadows',
        params: uuidParams,
        response: { 204: { type: 'null', description: 'Deleted' }, ...errorResponses(400, 403, 404) },
      },
    },
    async (request, reply) => {
      await service.remove(request.params.uuid, actorOf(request.principal));
      return reply.code(204).send();
    },
  );
};
