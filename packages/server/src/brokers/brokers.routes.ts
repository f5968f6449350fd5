/** `/api/v1/brokers`: validates and maps; the rules live in {@link BrokerService}. Admin only. */
import type { FastifyPluginAsync } from 'fastify';
import { actorOf } from '../auth/auth.plugin.ts';
import { errorResponses, idSchema, timestampSchema } from '../http/schemas.ts';
import type { BrokerPatch, BrokerService, NewBroker } from './brokers.service.ts';

export interface BrokerRoutesOptions {
  service: BrokerService;
}

const noControl = '[^\\x00-\\x1f\\x7f]';
const noSpaceOrControl = '[^\\s\\x00-\\x1f\\x7f]';

const fields = {
  name: {
    type: 'string',
    minLength: 1,
    maxLength: 100,
    pattern: `^${noSpaceOrControl}(?:${noControl}*${noSpaceOrControl})?$`,
    description: 'a unique name of 1–100 characters, without control characters or leading/trailing spaces',
  },
  protocol: { type: 'string', enum: ['mqtt', 'mqtts', 'ws', 'wss'], description: 'Transport: TCP, TLS, WebSocket or secure WebSocket' },
  host: { type: 'string', minLength: 1, maxLength: 253, format: 'host', description: 'Host name or IP address the server connects to' },
  port: { type: 'integer', minimum: 1, maximum: 65535 },
  protocolVersion: { type: 'integer', enum: [4, 5], description: 'MQTT protocol level: 4 (3.1.1) or 5' },
  username: { type: ['string', 'null'], minLength: 1, maxLength: 256, description: "The server's own MQTT username for this broker" },
  password: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 1024,
    description: "The server's own MQTT password (write-only: stored encrypted, never returned; null clears it)",
  },
  caCert: {
    type: ['string', 'null'],
    minLength: 1,
    maxLength: 65536,
    pattern: '-----BEGIN CERTIFICATE-----',
    // Also checked by the service: each block parses, none expired, no private key (docs/tls.md).
    description: 'a PEM CA certificate (-----BEGIN CERTIFICATE-----), or several, that signed the broker\'s certificate, for mqtts/wss; null clears it',
  },
  provisioner: { type: 'string', enum: ['embedded', 'mosquitto-dynsec', 'static'], description: 'How device credentials reach this broker' },
  status: { type: 'string', enum: ['active', 'draining', 'disabled'] },
} as const;

const createBody = {
  type: 'object',
  required: ['name', 'protocol', 'host', 'port'],
  properties: fields,
  additionalProperties: false,
} as const;

const patchBody = {
  type: 'object',
  minProperties: 1,
  properties: fields,
  additionalProperties: false,
} as const;

const brokerSchema = {
  type: 'object',
  required: ['id', 'name', 'protocol', 'host', 'port', 'protocolVersion', 'status', 'provisioner', 'username', 'hasPassword', 'hasCaCert', 'url', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'integer' },
    name: { type: 'string' },
    protocol: fields.protocol,
    host: { type: 'string' },
    port: { type: 'integer' },
    protocolVersion: { type: 'integer', enum: [4, 5] },
    status: fields.status,
    provisioner: fields.provisioner,
    username: { type: ['string', 'null'] },
    hasPassword: { type: 'boolean' },
    hasCaCert: { type: 'boolean' },
    url: { type: 'string', description: 'protocol://host:port' },
    createdAt: timestampSchema,
    updatedAt: timestampSchema,
    connection: {
      type: 'object',
      description: "The answering server instance's connection to this broker (absent for a disabled broker)",
      required: ['connected', 'owner'],
      properties: {
        connected: { type: 'boolean' },
        owner: { type: 'boolean', description: "this instance owns the broker's request subscriptions" },
        lastError: { type: 'string', description: 'why the last attempt failed or the connection was lost, e.g. a TLS verification failure' },
      },
      additionalProperties: false,
    },
  },
  additionalProperties: false,
} as const;

const idParams = {
  type: 'object',
  required: ['id'],
  properties: { id: idSchema },
  additionalProperties: false,
} as const;

const tags = ['brokers'];

export const brokerRoutes: FastifyPluginAsync<BrokerRoutesOptions> = async (app, { service }) => {
  app.get(
    '/brokers',
    {
      schema: {
        tags,
        summary: 'List brokers',
        response: {
          200: {
            type: 'object',
            required: ['items', 'total'],
            properties: { items: { type: 'array', items: brokerSchema }, total: { type: 'integer' } },
            additionalProperties: false,
          },
          ...errorResponses(403),
        },
      },
    },
    async () => {
      const items = await service.list();
      return { items, total: items.length };
    },
  );

  app.post<{ Body: NewBroker }>(
    '/brokers',
    {
      schema: {
        tags,
        summary: 'Register a broker',
        body: createBody,
        response: { 201: brokerSchema, ...errorResponses(400, 403, 409, 413, 415) },
      },
    },
    async (request, reply) => {
      const broker = await service.create(request.body, actorOf(request.principal));
      return reply.code(201).header('location', `/api/v1/brokers/${broker.id}`).send(broker);
    },
  );

  app.get<{ Params: { id: number } }>(
    '/brokers/:id',
    { schema: { tags, summary: 'Get a broker', params: idParams, response: { 200: brokerSchema, ...errorResponses(400, 403, 404) } } },
    async (request) => service.get(request.params.id),
  );

  app.patch<{ Params: { id: number }; Body: BrokerPatch }>(
    '/brokers/:id',
    {
      schema: {
        tags,
        summary: 'Change a broker (null clears username, password or caCert)',
        params: idParams,
        body: patchBody,
        response: { 200: brokerSchema, ...errorResponses(400, 403, 404, 409, 413, 415) },
      },
    },
    async (request) => service.update(request.params.id, request.body, actorOf(request.principal)),
  );

  app.delete<{ Params: { id: number } }>(
    '/brokers/:id',
    {
      schema: {
        tags,
        summary: 'Delete a broker that no device is assigned to',
        params: idParams,
        response: { 204: { type: 'null', description: 'Deleted' }, ...errorResponses(400, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      await service.remove(request.params.id, actorOf(request.principal));
      return reply.code(204).send();
    },
  );
};
