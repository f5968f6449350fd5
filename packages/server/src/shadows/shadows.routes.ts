/**
 * Shadow routes: the same shadow service as MQTT, with errors as HTTP statuses.
 * Bodies reach the service as raw bytes so that HTTP and MQTT share one validator
 * (415 for non-UTF-8, AWS messages for every malformed document).
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { CLASSIC_SHADOW, parseUpdateRequest, type ShadowErrorBody } from '@switchyard/protocol';
import { AppError, type ErrorCode } from '../errors.ts';
import { principalOf } from '../auth/auth.plugin.ts';
import type { ShadowOrigin, ShadowOutcome, ShadowService } from './shadow.service.ts';

const uuidParam = { type: 'string', pattern: '^[A-Za-z0-9:_-]{1,128}$' } as const;
const nameParam = { type: 'string', pattern: '^[A-Za-z0-9:_-]{1,64}$' } as const;
const shadowBody = { type: 'object', additionalProperties: true, description: 'AWS IoT shadow document' } as const;

function statusCode(error: ShadowErrorBody): ErrorCode {
  switch (error.code) {
    case 400:
      return error.message === 'Invalid JSON' ? 'INVALID_JSON' : 'VALIDATION_FAILED';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return error.message === 'Thing not found' ? 'DEVICE_NOT_FOUND' : 'SHADOW_NOT_FOUND';
    case 409:
      return 'SHADOW_VERSION_CONFLICT';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'TOO_MANY_REQUESTS';
    default:
      return 'INTERNAL';
  }
}

function unwrap(outcome: ShadowOutcome): object {
  if (outcome.ok) return outcome.body;
  const { error } = outcome;
  throw new AppError(statusCode(error), error.message, error.clientToken ? { clientToken: error.clientToken } : undefined);
}

export const shadowRoutes: FastifyPluginAsync<{ shadows: ShadowService }> = async (app, { shadows }) => {
  // Raw bytes: the shadow validator gives AWS's exact errors (encapsulated to this plugin).
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  const origin = (req: FastifyRequest): ShadowOrigin => ({ kind: 'http', actor: principalOf(req).kind === 'device' ? 'device' : 'admin' });
  const handlers = (nameOf: (params: Record<string, string>) => string) => ({
    get: async (req: FastifyRequest) => {
      const p = req.params as Record<string, string>;
      return unwrap(await shadows.submit({ op: 'get', deviceUuid: p.uuid!, shadowName: nameOf(p), origin: origin(req) }));
    },
    del: async (req: FastifyRequest) => {
      const p = req.params as Record<string, string>;
      return unwrap(await shadows.submit({ op: 'delete', deviceUuid: p.uuid!, shadowName: nameOf(p), origin: origin(req) }));
    },
    update: async (req: FastifyRequest) => {
      const p = req.params as Record<string, string>;
      const parsed = parseUpdateRequest(Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
      if (!parsed.ok) return unwrap({ ok: false, error: { ...parsed.error, timestamp: 0 } });
      return unwrap(
        await shadows.submit({ op: 'update', deviceUuid: p.uuid!, shadowName: nameOf(p), origin: origin(req), request: parsed.request }),
      );
    },
  });

  const named = handlers((p) => p.name!);
  const classic = handlers(() => CLASSIC_SHADOW);
  const namedParams = { type: 'object', required: ['uuid', 'name'], properties: { uuid: uuidParam, name: nameParam } } as const;
  const classicParams = { type: 'object', required: ['uuid'], properties: { uuid: uuidParam } } as const;
  const tags = ['shadows'];
  const deviceConfig = { device: true };
  // Writes: the device itself, or an operator/admin token. Shadow writes have no audit row of their own (a device
  // may write thousands a second; the shadow's version and metadata record them): the HTTP layer records those
  // made with an admin-API token (`audit`), see docs/operations.md.
  const updateConfig = { device: true, scope: 'operator', audit: 'shadow.update' } as const;
  const deleteConfig = { device: true, scope: 'operator', audit: 'shadow.delete' } as const;

  app.get('/devices/:uuid/shadows/:name', { schema: { tags, params: namedParams, summary: 'Get a named shadow' }, config: deviceConfig }, (req) => named.get(req),
  );
  app.post('/devices/:uuid/shadows/:name', { schema: { tags, params: namedParams, body: shadowBody, summary: 'Update a named shadow' }, config: updateConfig }, (req) => named.update(req),
  );
  app.delete('/devices/:uuid/shadows/:name', { schema: { tags, params: namedParams, summary: 'Delete a named shadow' }, config: deleteConfig }, (req) => named.del(req),
  );
  app.get('/devices/:uuid/shadow', { schema: { tags, params: classicParams, summary: 'Get the classic shadow' }, config: deviceConfig }, (req) => classic.get(req),
  );
  app.post('/devices/:uuid/shadow', { schema: { tags, params: classicParams, body: shadowBody, summary: 'Update the classic shadow' }, config: updateConfig }, (req) => classic.update(req),
  );
  app.delete('/devices/:uuid/shadow', { schema: { tags, params: classicParams, summary: 'Delete the classic shadow' }, config: deleteConfig }, (req) => classic.del(req),
  );
  app.get(
    '/devices/:uuid/shadows',
    {
      schema: {
        tags,
        summary: 'List the names of a device’s named shadows',
        params: classicParams,
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { pageSize: { type: 'integer', minimum: 1, maximum: 100, default: 25 }, nextToken: nameParam },
        },
      },
      config: deviceConfig,
    },
    async (req) => {
      const { uuid } = req.params as { uuid: string };
      const q = req.query as { pageSize: number; nextToken?: string };
      const names = await shadows.listNames(uuid, { limit: q.pageSize + 1, ...(q.nextToken ? { after: q.nextToken } : {}) });
      if (names === null) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${uuid}`);
      const page = names.slice(0, q.pageSize);
      return {
        results: page,
        items: page,
        total: page.length,
        ...(names.length > q.pageSize ? { nextToken: page[page.length - 1] } : {}),
        timestamp: Math.floor(Date.now() / 1000),
      };
    },
  );
};
