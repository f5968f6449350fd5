/**
 * Request validation: Ajv through Fastify's own compiler, set up so that bad input gets a specific message.
 *
 * Two Ajv instances, chosen per HTTP part:
 * - body: no type coercion (`"port": "1883"` is an error, not 1883) and no silent removal of unknown properties
 *   (Fastify's default `removeAdditional: true` would make `additionalProperties: false` drop typos quietly);
 * - params and querystring: coercion on (they arrive as strings), same strictness otherwise.
 *
 * {@link describeValidationErrors} turns Ajv's errors into one sentence naming each bad field
 * (`body.port must be at most 65535`). Values are never echoed: a field may be a password.
 */
import { isIP } from 'node:net';
import AjvCompiler from '@fastify/ajv-compiler';
import type { FastifySchemaValidationError, FastifyServerOptions } from 'fastify';

type ValidatorFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator'];
type AjvInstance = Parameters<NonNullable<NonNullable<Parameters<NonNullable<ValidatorFactory>>[1]>['onCreate']>>[0];

const HOSTNAME_RE = /^(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** True for a DNS host name (RFC 1123 labels) or an IPv4/IPv6 literal (no brackets, no port). */
export function isHost(value: string): boolean {
  return isIP(value) !== 0 || HOSTNAME_RE.test(value);
}

/** Custom formats, with the phrase used in error messages. */
const FORMAT_PHRASES: Record<string, string> = {
  host: 'a host name or an IP address (no scheme, port or brackets)',
  'date-time': 'an RFC 3339 date-time',
  uri: 'an absolute URI',
  uuid: 'a UUID',
  email: 'an e-mail address',
};

function addFormats(ajv: AjvInstance): void {
  ajv.addFormat('host', { type: 'string', validate: isHost });
}

const shared = { removeAdditional: false, allErrors: true, verbose: true, useDefaults: true, allowUnionTypes: true } as const;

/** The `schemaController.compilersFactory.buildValidator` for `Fastify({ … })`. */
export function createValidatorFactory(): NonNullable<ValidatorFactory> {
  const pool = AjvCompiler();
  return (externalSchemas, serverOptions) => {
    // Fastify's `ajv.customOptions` and `ajv.plugins` are honoured; ours win where they overlap.
    const custom = (serverOptions?.mode === 'JTD' ? {} : serverOptions?.customOptions) ?? {};
    const plugins = serverOptions?.plugins ?? [];
    const body = pool(externalSchemas, { plugins, customOptions: { ...custom, ...shared, coerceTypes: false }, onCreate: addFormats });
    const other = pool(externalSchemas, { plugins, customOptions: { ...custom, ...shared, coerceTypes: 'array' }, onCreate: addFormats });
    return (route) => (route.httpPart === 'body' ? body(route) : finiteOnly(other(route)));
  };
}

/**
 * Ajv's coercion turns `"1e309"` or `"Infinity"` into `Infinity` and lets it pass as an integer (the type is not
 * checked again after coercion), and PostgreSQL then fails on it. Found by test/integration/http-fuzz.test.ts:
 * `GET /brokers/Infinity` and `?limit=1e309` answered 500. A coerced non-finite number is a validation error.
 */
function finiteOnly<F extends ((data: any) => unknown) & { errors?: unknown }>(validate: F): F {
  const wrapped = ((data: unknown) => {
    const ok = validate(data);
    if (ok !== true) {
      wrapped.errors = validate.errors;
      return ok;
    }
    const bad = nonFinitePath(data, '');
    if (bad === null) return true;
    wrapped.errors = [{ keyword: 'type', instancePath: bad, schemaPath: '#/type', params: { type: 'integer' }, message: 'must be a finite number' }];
    return false;
  }) as F;
  return wrapped;
}

function nonFinitePath(v: unknown, path: string): string | null {
  if (typeof v === 'number') return Number.isFinite(v) ? null : path;
  if (typeof v !== 'object' || v === null) return null;
  for (const [k, child] of Object.entries(v)) {
    // Strings and the like cannot hold a number: skip them before building a path (this runs on every request).
    if (typeof child !== 'number' && (typeof child !== 'object' || child === null)) continue;
    const found = nonFinitePath(child, `${path}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`);
    if (found !== null) return found;
  }
  return null;
}

const TYPE_PHRASES: Record<string, string> = {
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'a boolean',
  object: 'an object',
  array: 'an array',
  null: 'null',
};

function typePhrase(type: unknown): string {
  const types = Array.isArray(type) ? type : String(type).split(',');
  return types.map((t) => TYPE_PHRASES[String(t)] ?? String(t)).join(' or ');
}

function decodePointer(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'))
    .join('.');
}

type VerboseError = FastifySchemaValidationError & { parentSchema?: Record<string, unknown> };

/** One field's problem: `field` is `body.port`, `params.id`, `querystring.limit`, … */
export interface FieldProblem {
  field: string;
  message: string;
}

export function describeValidationErrors(errors: readonly FastifySchemaValidationError[], context: string | undefined): FieldProblem[] {
  const root = context ?? 'request';
  const out: FieldProblem[] = [];
  const seen = new Set<string>();
  // anyOf/oneOf/if only summarise their branches' errors: report those when nothing more specific exists.
  const specific = errors.filter((e) => !['anyOf', 'oneOf', 'if'].includes(e.keyword));
  for (const e of (specific.length > 0 ? specific : errors) as VerboseError[]) {
    const path = [root, decodePointer(e.instancePath)].filter((s) => s !== '').join('.');
    const p = e.params;
    let field = path;
    let message: string;
    switch (e.keyword) {
      case 'required':
        field = `${path}.${String(p.missingProperty)}`;
        message = 'is required';
        break;
      case 'additionalProperties': {
        const allowed = Object.keys((e.parentSchema?.properties as Record<string, unknown> | undefined) ?? {});
        message = `has an unknown property "${String(p.additionalProperty).slice(0, 64)}"${allowed.length > 0 ? ` (allowed: ${allowed.join(', ')})` : ''}`;
        break;
      }
      case 'type':
        message = `must be ${typePhrase(p.type)}`;
        break;
      case 'enum':
        message = `must be one of: ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
        break;
      case 'const':
        message = `must be ${JSON.stringify(p.allowedValue)}`;
        break;
      case 'minimum':
        message = `must be at least ${String(p.limit)}`;
        break;
      case 'maximum':
        message = `must be at most ${String(p.limit)}`;
        break;
      case 'exclusiveMinimum':
        message = `must be greater than ${String(p.limit)}`;
        break;
      case 'exclusiveMaximum':
        message = `must be less than ${String(p.limit)}`;
        break;
      case 'minLength':
        message = p.limit === 1 ? 'must not be empty' : `must be at least ${String(p.limit)} characters long`;
        break;
      case 'maxLength':
        message = `must be at most ${String(p.limit)} characters long`;
        break;
      case 'minProperties':
        message = `must set at least ${String(p.limit)} ${p.limit === 1 ? 'field' : 'fields'}`;
        break;
      case 'maxProperties':
        message = `must set at most ${String(p.limit)} fields`;
        break;
      case 'minItems':
        message = `must hold at least ${String(p.limit)} items`;
        break;
      case 'maxItems':
        message = `must hold at most ${String(p.limit)} items`;
        break;
      case 'format':
        message = `must be ${FORMAT_PHRASES[String(p.format)] ?? `in the "${String(p.format)}" format`}`;
        break;
      case 'pattern': {
        const description = e.parentSchema?.description;
        message = typeof description === 'string' ? `is invalid: expected ${description}` : `must match the pattern ${String(p.pattern)}`;
        break;
      }
      default:
        message = e.message ?? `fails the "${e.keyword}" rule`;
    }
    const key = `${field} ${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field, message });
  }
  return out;
}
