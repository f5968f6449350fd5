/**
 * `GET /api/v1/audit`: the audit log, newest first, with filters and paging. Admin scope: the rows name every
 * API token (id, name, scope) and who did what, the same facts `GET /tokens` keeps to admins.
 */
import type { FastifyPluginAsync } from 'fastify';
import { AppError } from '../errors.ts';
import { errorResponses, timestampSchema, pagingQuery, pageSchema } from '../http/schemas.ts';
import type { AuditService } from './audit.service.ts';

export interface AuditRoutesOptions {
  service: AuditService;
}

/** An actor or action filter: exact, or a prefix ending with `*`. */
const matchSchema = (what: string, example: string) =>
  ({ type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f\\x7f]+$', description: `${what}: exact, or a prefix ending with * (${example})` }) as const;

const itemSchema = {
  type: 'object',
  required: ['id', 'at', 'actor', 'action', 'targetType', 'targetId', 'outcome', 'details'],
  properties: {
    id: { type: 'integer' },
    at: timestampSchema,
    actor: { type: 'string', description: 'admin, token:<id>:<name>, device:<uuid>, system or anonymous' },
    action: { type: 'string', description: '<resource>.<verb>, e.g. broker.create, device.assign_broker, migration.completed, request.refused' },
    targetType: { type: 'string' },
    targetId: { type: ['string', 'null'] },
    outcome: { type: 'string', enum: ['ok', 'error'] },
    details: { type: 'object', additionalProperties: true, description: 'what changed, never a secret' },
  },
  additionalProperties: false,
} as const;

interface AuditQuery {
  actor?: string;
  action?: string;
  targetType?: string;
  targetId?: string;
  outcome?: 'ok' | 'error';
  since?: string;
  until?: string;
  beforeId?: number;
  limit: number;
  offset: number;
}

/** An RFC 3339 string the schema accepted as an instant (a leap second `:60` passes the format but is no Date). */
function instant(field: string, value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new AppError('VALIDATION_FAILED', `querystring.${field} must be an RFC 3339 date-time`, { fields: [{ field: `querystring.${field}`, message: 'must be an RFC 3339 date-time' }] });
  return d;
}

export const auditRoutes: FastifyPluginAsync<AuditRoutesOptions> = async (app, { service }) => {
  app.get<{ Querystring: AuditQuery }>(
    '/audit',
    {
      config: { scope: 'admin' },
      schema: {
        tags: ['audit'],
        summary: 'The audit log, newest first (filters: actor, action, targetType, targetId, outcome, since, until)',
        querystring: {
          type: 'object',
          properties: {
            actor: matchSchema('Who', 'device:*'),
            action: matchSchema('What', 'migration.*'),
            targetType: { type: 'string', pattern: '^[a-z_]{1,32}$', description: 'broker, device, token, job, migration, …' },
            targetId: { type: 'string', minLength: 1, maxLength: 200, pattern: '^[^\\x00-\\x1f\\x7f]+$' },
            outcome: { type: 'string', enum: ['ok', 'error'] },
            since: { ...timestampSchema, description: 'rows at or after this instant (RFC 3339)' },
            until: { ...timestampSchema, description: 'rows before this instant (RFC 3339)' },
            beforeId: { type: 'integer', minimum: 1, maximum: Number.MAX_SAFE_INTEGER, description: 'rows with a smaller id: pass the last id of a page for a stable next page' },
            ...pagingQuery,
          },
          additionalProperties: false,
        },
        response: {
          200: pageSchema(itemSchema),
          ...errorResponses(400, 403),
        },
      },
    },
    async (request) => {
      const q = request.query;
      return service.list({
        limit: q.limit,
        offset: q.offset,
        ...(q.actor !== undefined ? { actor: q.actor } : {}),
        ...(q.action !== undefined ? { action: q.action } : {}),
        ...(q.targetType !== undefined ? { targetType: q.targetType } : {}),
        ...(q.targetId !== undefined ? { targetId: q.targetId } : {}),
        ...(q.outcome !== undefined ? { outcome: q.outcome } : {}),
        ...(q.since !== undefined ? { since: instant('since', q.since) } : {}),
        ...(q.until !== undefined ? { until: instant('until', q.until) } : {}),
        ...(q.beforeId !== undefined ? { beforeId: q.beforeId } : {}),
      });
    },
  );
};
