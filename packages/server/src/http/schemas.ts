/**
 * JSON schemas shared by the route files. They validate requests, shape answers (fast-json-stringify drops any
 * property a response schema does not list — a second guard against leaking a hash or a secret) and make up
 * the OpenAPI document.
 */
import { ERROR_CATALOGUE } from '../errors.ts';

/** `{ error, message, code }` plus optional details (`fields`, `requestId`, …). */
export const errorSchema = {
  type: 'object',
  required: ['error', 'message', 'code'],
  properties: {
    error: { type: 'string', description: 'HTTP reason phrase' },
    message: { type: 'string', description: 'What went wrong, specifically' },
    code: { type: 'string', enum: Object.keys(ERROR_CATALOGUE), description: 'Catalogue code (docs/errors.md)' },
  },
  additionalProperties: true,
} as const;

/** Response entries for the given error statuses (plus 401 for every authenticated route). */
export function errorResponses(...statuses: number[]): Record<number, typeof errorSchema & { description: string }> {
  const out: Record<number, typeof errorSchema & { description: string }> = {};
  for (const status of new Set([401, 500, ...statuses])) {
    const codes = Object.entries(ERROR_CATALOGUE)
      .filter(([, v]) => v.status === status)
      .map(([k]) => k);
    out[status] = { ...errorSchema, description: codes.join(', ') };
  }
  return out;
}

/** Largest value of a PostgreSQL `integer` (ids are `serial`): bigger ids can exist nowhere. */
export const PG_INT_MAX = 2147483647;

/** A database id in a path or body: a positive 32-bit integer. */
export const idSchema = { type: 'integer', minimum: 1, maximum: PG_INT_MAX } as const;

export const timestampSchema = { type: 'string', format: 'date-time' } as const;

/** `limit`/`offset` of a paged list's query string. */
export const pagingQuery = {
  limit: { type: 'integer', minimum: 1, maximum: 500, default: 50 },
  offset: { type: 'integer', minimum: 0, maximum: 1_000_000_000, default: 0 },
} as const;

/** A paged list answer: `{items, total, limit, offset}`. */
export function pageSchema<T extends object>(itemSchema: T) {
  return {
    type: 'object',
    required: ['items', 'total', 'limit', 'offset'],
    properties: { items: { type: 'array', items: itemSchema }, total: { type: 'integer' }, limit: { type: 'integer' }, offset: { type: 'integer' } },
    additionalProperties: false,
  } as const;
}
