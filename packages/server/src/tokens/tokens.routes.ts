/** `/api/v1/tokens`: API tokens with scopes; admin scope only. Validates and maps; rules in {@link TokenService}. */
import type { FastifyPluginAsync } from 'fastify';
import { actorOf, principalOf } from '../auth/auth.plugin.ts';
import { errorResponses, idSchema, timestampSchema, pagingQuery, pageSchema } from '../http/schemas.ts';
import { API_TOKEN_SCOPES, type ApiTokenScope, type TokenService } from './tokens.service.ts';

export interface TokenRoutesOptions {
  service: TokenService;
}

const noControl = '[^\\x00-\\x1f\\x7f]';
const noSpaceOrControl = '[^\\s\\x00-\\x1f\\x7f]';

const scopeSchema = {
  type: 'string',
  enum: [...API_TOKEN_SCOPES],
  description: 'viewer: every read; operator: also assign, jobs and shadows; admin: everything (tokens, brokers, devices)',
} as const;

const createBody = {
  type: 'object',
  required: ['name', 'scope'],
  properties: {
    name: {
      type: 'string',
      minLength: 1,
      maxLength: 100,
      pattern: `^${noSpaceOrControl}(?:${noControl}*${noSpaceOrControl})?$`,
      description: 'who or what uses it (1–100 characters, no control characters or leading/trailing spaces); shown in the audit log',
    },
    scope: scopeSchema,
  },
  additionalProperties: false,
} as const;

const tokenProperties = {
  id: { type: 'integer' },
  name: { type: 'string' },
  scope: scopeSchema,
  createdAt: timestampSchema,
  createdBy: { type: 'string', description: 'audit actor that created it' },
} as const;

const tokenSchema = {
  type: 'object',
  required: ['id', 'name', 'scope', 'createdAt', 'createdBy', 'lastUsedAt', 'revokedAt', 'revokedBy'],
  properties: {
    ...tokenProperties,
    lastUsedAt: { type: ['string', 'null'], format: 'date-time', description: 'last request with it (recorded at most once a minute)' },
    revokedAt: { type: ['string', 'null'], format: 'date-time' },
    revokedBy: { type: ['string', 'null'] },
  },
  additionalProperties: false,
} as const;

const createdSchema = {
  type: 'object',
  required: ['id', 'name', 'scope', 'token', 'createdAt', 'createdBy'],
  properties: { ...tokenProperties, token: { type: 'string', description: 'The bearer token; shown only in this answer' } },
  additionalProperties: false,
} as const;

const idParams = { type: 'object', required: ['id'], properties: { id: idSchema }, additionalProperties: false } as const;

const tags = ['tokens'];
const admin = { scope: 'admin' } as const;

export const tokenRoutes: FastifyPluginAsync<TokenRoutesOptions> = async (app, { service }) => {
  app.post<{ Body: { name: string; scope: ApiTokenScope } }>(
    '/tokens',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Create an API token (the answer holds the token, shown only once)',
        body: createBody,
        response: { 201: createdSchema, ...errorResponses(400, 403, 413, 415) },
      },
    },
    async (request, reply) => {
      const created = await service.create(request.body, actorOf(principalOf(request)));
      return reply.code(201).header('location', `/api/v1/tokens/${created.id}`).header('cache-control', 'no-store').send(created);
    },
  );

  app.get<{ Querystring: { includeRevoked: boolean; limit: number; offset: number } }>(
    '/tokens',
    {
      config: admin,
      schema: {
        tags,
        summary: 'List API tokens (never the token itself)',
        querystring: {
          type: 'object',
          properties: {
            includeRevoked: { type: 'boolean', default: false, description: 'also list revoked tokens' },
            ...pagingQuery,
          },
          additionalProperties: false,
        },
        response: {
          200: pageSchema(tokenSchema),
          ...errorResponses(400, 403),
        },
      },
    },
    async (request) => service.list(request.query),
  );

  app.get<{ Params: { id: number } }>(
    '/tokens/:id',
    { config: admin, schema: { tags, summary: 'One API token (never the token itself)', params: idParams, response: { 200: tokenSchema, ...errorResponses(400, 403, 404) } } },
    async (request) => service.get(request.params.id),
  );

  app.delete<{ Params: { id: number } }>(
    '/tokens/:id',
    {
      config: admin,
      schema: {
        tags,
        summary: 'Revoke an API token (its next request gets 401; revoking a revoked token changes nothing)',
        params: idParams,
        response: { 204: { type: 'null', description: 'Revoked' }, ...errorResponses(400, 403, 404) },
      },
    },
    async (request, reply) => {
      await service.revoke(request.params.id, actorOf(principalOf(request)));
      return reply.code(204).send();
    },
  );
};
