/**
 * Writes docs/http-api.md from the server's own OpenAPI document: `npm run docs:api`
 * (`node --import tsx scripts/gen-api-docs.ts`; `--check` only compares and exits 1 when the file is stale).
 *
 * It starts the server exactly as `switchyard serve` does (`startSwitchyard`, so every route plugin
 * `serve.ts` registers is documented) but without listening, on a throwaway PGlite, with no broker,
 * and reads `/openapi.json` through `app.inject`.
 *
 * Who may call a route is not in the OpenAPI document (the `config: { device: true }` mark lives in
 * the route options, which Fastify does not expose once registered), so it is asked of the real auth
 * hook: a device token calls every `/api/v1` route with another device's uuid. The hook refuses
 * each call in `onRequest`, before any handler runs — with one message on routes a device may never
 * call (the same as on `GET /api/v1/brokers`) and another on device-accessible routes
 * ("only its own device's resources"). Nothing is executed and nothing is guessed.
 *
 * `packages/server/test/http/api-docs.test.ts` regenerates the text and fails when the file differs.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { STATUS_CODES } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../packages/server/src/config.ts';
import { silentLogger } from '../packages/server/src/log.ts';
import { startSwitchyard } from '../packages/server/src/serve.ts';

/** The generated file. */
export const API_DOC_PATH = fileURLToPath(new URL('../docs/http-api.md', import.meta.url));

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;
const DOCS_ADMIN_TOKEN = 'sya_api-docs-generator-0123456789';
const PROBE_DEVICE = 'api-docs-probe';
const OTHER_DEVICE = 'api-docs-other';

type Schema = Record<string, any>;
type Access = 'public' | 'admin' | 'device';

interface Operation {
  method: string;
  path: string;
  op: Schema;
  access: Access;
}

/** Builds the server, reads its OpenAPI document and renders the markdown. */
export async function generateApiDocs(): Promise<string> {
  const dataDir = await mkdtemp(join(tmpdir(), 'switchyard-api-docs-'));
  try {
    // An explicit environment, not process.env: the docs must not depend on who runs the generator.
    const config = loadConfig({
      SWITCHYARD_DATA_DIR: dataDir,
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      SWITCHYARD_DEMO_DEVICES: '0',
      SWITCHYARD_ADMIN_TOKEN: DOCS_ADMIN_TOKEN,
      SWITCHYARD_SECRET: 'api-docs-generator-secret',
      LOG_LEVEL: 'silent',
    });
    const sy = await startSwitchyard({ config, log: silentLogger(), listen: false });
    try {
      const res = await sy.app.inject({ method: 'GET', url: '/openapi.json' });
      if (res.statusCode !== 200) throw new Error(`GET /openapi.json answered ${res.statusCode}: ${res.body}`);
      const doc = res.json() as Schema;
      const ops = await classify(sy.app, doc);
      return render(doc, ops);
    } finally {
      await sy.stop();
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Every documented operation with who may call it (see the file comment for how that is found). */
async function classify(app: FastifyInstance, doc: Schema): Promise<Operation[]> {
  const created = await app.inject({
    method: 'POST',
    url: '/api/v1/devices',
    headers: { authorization: `Bearer ${DOCS_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ uuid: PROBE_DEVICE }),
  });
  if (created.statusCode !== 201) throw new Error(`registering the probe device answered ${created.statusCode}: ${created.body}`);
  const deviceToken = (created.json() as { token: string }).token;
  const probe = async (method: string, path: string): Promise<{ status: number; message: string }> => {
    const url = path.replace(/\{uuid\}/g, OTHER_DEVICE).replace(/\{[^}]+\}/g, '1');
    const res = await app.inject({ method: method.toUpperCase() as 'GET', url, headers: { authorization: `Bearer ${deviceToken}` } });
    return { status: res.statusCode, message: String((res.json() as { message?: unknown }).message) };
  };
  const adminOnly = await probe('get', '/api/v1/brokers');
  if (adminOnly.status !== 403) throw new Error(`a device token on GET /api/v1/brokers answered ${adminOnly.status}, expected 403`);

  const out: Operation[] = [];
  for (const [path, item] of Object.entries(doc.paths as Record<string, Schema>)) {
    for (const method of METHODS) {
      const op = item[method] as Schema | undefined;
      if (!op) continue;
      let access: Access;
      if (Array.isArray(op.security) && op.security.length === 0) access = 'public';
      else if (!path.startsWith('/api/v1/')) throw new Error(`${method.toUpperCase()} ${path} needs a token but is outside /api/v1: the generator cannot tell who may call it`);
      else {
        const r = await probe(method, path);
        if (r.status !== 403) {
          throw new Error(`a device token on ${method.toUpperCase()} ${path} with another device's uuid answered ${r.status} (${r.message}); expected 403`);
        }
        access = r.message === adminOnly.message ? 'admin' : 'device';
      }
      out.push({ method, path, op, access });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- rendering

/** A table cell: one line, pipes escaped (also inside code spans, as GitHub requires). */
const cell = (s: string): string => s.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
const code = (s: string): string => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);
const colonPath = (p: string): string => p.replace(/\{([^}]+)\}/g, ':$1');
const anchorOf = (method: string, path: string): string =>
  `${method} ${colonPath(path)}`
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replace(/ /g, '-');

function typeOf(s: Schema): string {
  const types = Array.isArray(s.type) ? [...s.type] : s.type ? [s.type] : [];
  if (s.nullable === true && !types.includes('null')) types.push('null');
  if (types.length === 0) return s.enum ? 'enum' : 'any';
  return types.join(' or ');
}

function rulesOf(s: Schema): string {
  const rules: string[] = [];
  if (s.enum) rules.push(`one of ${s.enum.map((v: unknown) => code(JSON.stringify(v))).join(', ')}`);
  if (s.const !== undefined) rules.push(`exactly ${code(JSON.stringify(s.const))}`);
  const range = (lo: unknown, hi: unknown, unit: string): void => {
    if (lo !== undefined && hi !== undefined) rules.push(`${lo}–${hi}${unit}`);
    else if (lo !== undefined) rules.push(`≥ ${lo}${unit}`);
    else if (hi !== undefined) rules.push(`≤ ${hi}${unit}`);
  };
  range(s.minimum, s.maximum, '');
  range(s.minLength, s.maxLength, ' characters');
  range(s.minProperties, s.maxProperties, ' properties');
  if (s.pattern) rules.push(`pattern ${code(s.pattern)}`);
  if (s.format) rules.push(`format ${s.format}`);
  if (s.default !== undefined) rules.push(`default ${code(JSON.stringify(s.default))}`);
  if (s.type === 'object' && s.additionalProperties === true && !s.properties) rules.push('any JSON object');
  const text = rules.join('; ');
  if (s.description) return text ? `${text} — ${s.description}` : s.description;
  return text || '—';
}

interface ParamRow {
  name: string;
  in: string;
  schema: Schema;
  required: boolean;
}

function paramsOf(op: Schema): ParamRow[] {
  const rows: ParamRow[] = [];
  const params = (op.parameters ?? []) as Schema[];
  // Path parameters first, in path order; then the query.
  for (const where of ['path', 'query']) {
    for (const p of params.filter((x) => x.in === where)) {
      rows.push({ name: p.name, in: where, schema: { ...p.schema, ...(p.description ? { description: p.description } : {}) }, required: p.required === true });
    }
  }
  const body = op.requestBody?.content?.['application/json']?.schema as Schema | undefined;
  if (body) {
    const required = new Set<string>(body.required ?? []);
    if (body.properties && Object.keys(body.properties).length > 0) {
      for (const [name, s] of Object.entries(body.properties as Record<string, Schema>)) {
        rows.push({ name, in: 'body', schema: s, required: required.has(name) });
      }
    } else {
      rows.push({ name: '(the body)', in: 'body', schema: body, required: op.requestBody.required === true });
    }
  }
  return rows;
}

function statusesOf(op: Schema): { success: string; errors: string } {
  const entries = Object.entries((op.responses ?? {}) as Record<string, Schema>);
  const ok = entries.filter(([s]) => /^[123]/.test(s));
  const success =
    ok.length === 0
      ? '200 (the answer is not described in the schema yet)'
      : ok
          .map(([s, r]) => {
            const d = r.description && r.description !== 'Default Response' ? ` (${r.description})` : '';
            const undescribed = r.description === 'Default Response' && !r.content ? ' (the answer is not described in the schema yet)' : '';
            return `${s}${d}${undescribed}`;
          })
          .join(', ');
  // Statuses only: `errorResponses()` describes each status with every catalogue code of that status, not with
  // the codes this route can give, so the codes would mislead. docs/errors.md explains each one.
  const bad = entries.filter(([s]) => /^[45]/.test(s)).map(([s]) => `${s} ${STATUS_CODES[Number(s)] ?? ''}`.trim());
  const errors = bad.length === 0 ? 'none declared in the route schema (see [errors](errors.md))' : `${bad.join(' · ')} — codes: [errors](errors.md)`;
  return { success, errors };
}

const ACCESS_TEXT: Record<Access, string> = {
  public: 'anyone (no token)',
  admin: 'admin token',
  device: 'admin token, or the device’s own token (for its own `:uuid` only)',
};

const WHO_SHORT: Record<Access, string> = { public: 'public', admin: 'admin', device: 'admin, device' };

/**
 * The least API-token scope of an operation (`x-switchyard-scope`, written by the auth plugin from the route's
 * `config.scope` or the default: viewer for GET, admin for the rest), as `viewer+`, `operator+` or `admin`.
 */
function scopeOf(o: Operation): string | null {
  const scope = o.op['x-switchyard-scope'] as string | undefined;
  if (o.access === 'public' || scope === undefined) return null;
  return scope === 'admin' ? 'admin' : `${scope}+`;
}

function whoShort(o: Operation): string {
  const scope = scopeOf(o);
  if (scope === null) return WHO_SHORT[o.access];
  return o.access === 'device' ? `${scope}, device` : scope;
}

function whoLong(o: Operation): string {
  const scope = o.op['x-switchyard-scope'] as string | undefined;
  if (o.access === 'public' || scope === undefined) return ACCESS_TEXT[o.access];
  const tokens = scope === 'admin' ? 'a token with the admin scope' : `a token with the ${scope} scope or higher`;
  return o.access === 'device' ? `${tokens}, or the device’s own token (for its own \`:uuid\` only)` : tokens;
}

function render(doc: Schema, ops: Operation[]): string {
  const declared = ((doc.tags ?? []) as Array<{ name: string; description?: string }>).map((t) => t.name);
  const descriptions = new Map(((doc.tags ?? []) as Array<{ name: string; description?: string }>).map((t) => [t.name, t.description]));
  const tagOf = (o: Operation): string => (o.op.tags ?? ['other'])[0] as string;
  const tags: string[] = [];
  for (const t of declared) if (ops.some((o) => tagOf(o) === t)) tags.push(t);
  for (const o of ops) if (!tags.includes(tagOf(o))) tags.push(tagOf(o));
  // Tags of public routes only (the probes) go last: the API first.
  const publicOnly = (t: string): boolean => ops.filter((o) => tagOf(o) === t).every((o) => o.access === 'public');
  tags.sort((a, b) => Number(publicOnly(a)) - Number(publicOnly(b)));
  const byTag = (t: string): Operation[] => ops.filter((o) => tagOf(o) === t);

  const out: string[] = [];
  out.push(
    '# HTTP API',
    '',
    '<!-- Generated by scripts/gen-api-docs.ts from the server\'s /openapi.json. Do not edit: change the route',
    '     schemas, then run `npm run docs:api` (a test fails while this file is stale). -->',
    '',
    `Every route below is served by \`switchyard serve\` (and \`npm start\`). A running server also describes itself:`,
    '`/openapi.json` (OpenAPI 3) and `/docs` (Swagger UI), both public.',
    '',
    '- **Base path** `/api/v1`; JSON only: a body must be UTF-8 `application/json` (anything else → 415), at most',
    '  128 KiB (→ 413). Bodies are not coerced (`1883`, not `"1883"`) and unknown fields are refused, not dropped.',
    '- **Authentication.** Every `/api/v1` route needs `Authorization: Bearer <token>`; without it, or with an',
    '  unknown (or revoked) token, the answer is 401. Three kinds of token:',
    '  - the **admin token** (`sya_…`): printed at first start and kept in `<SWITCHYARD_DATA_DIR>/admin-token`,',
    '    or set with `SWITCHYARD_ADMIN_TOKEN`. It may call every route.',
    '  - **API tokens** (`POST /api/v1/tokens`; `sya_…`, `syo_…`, `syv_…`) with a scope: `viewer` reads,',
    '    `operator` also assigns brokers, runs jobs and writes shadows, `admin` may do everything. The *who*',
    '    column gives the least scope of each route (`viewer+` = viewer, operator or admin); a token below it gets',
    '    403 with `requiredScope`. See [operations](operations.md#api-tokens-and-scopes).',
    '  - a **device token** (`syd_…`): returned once by `POST /api/v1/devices`. It may call only the routes',
    '    marked *device* below, and only with its own uuid in the path; anything else is 403.',
    '- **Errors** are `{ "error", "message", "code" }` — the HTTP reason phrase, a specific sentence, and a',
    '  catalogue code to match on. Every code, its status and what to do: [errors](errors.md). Every answer',
    '  carries `x-request-id` (send your own to correlate with the server log).',
    '- **Lists** answer `{ "items": [...], "total": n, ... }` (paged lists add `limit` and `offset`); a single',
    '  resource is the object itself.',
    '- **Shadow documents** follow AWS IoT Device Shadow semantics: see [the MQTT protocol](protocol.md).',
    '',
    '| method | path | summary | who |',
    '| --- | --- | --- | --- |',
  );
  for (const t of tags) {
    for (const o of byTag(t)) {
      out.push(`| ${o.method.toUpperCase()} | [${code(colonPath(o.path))}](#${anchorOf(o.method, o.path)}) | ${cell(o.op.summary ?? '')} | ${whoShort(o)} |`);
    }
  }

  for (const t of tags) {
    out.push('', `## ${t}`);
    const d = descriptions.get(t);
    if (d) out.push('', `${d}.`);
    for (const o of byTag(t)) {
      const { success, errors } = statusesOf(o.op);
      out.push('', `### ${o.method.toUpperCase()} ${colonPath(o.path)}`, '');
      if (o.op.summary) out.push(`${o.op.summary}.`, '');
      out.push(`- **Who:** ${whoLong(o)}`, `- **Success:** ${success}`, `- **Errors:** ${errors}`);
      const rows = paramsOf(o.op);
      if (rows.length > 0) {
        out.push('', '| name | in | type | rules | required |', '| --- | --- | --- | --- | --- |');
        for (const r of rows) {
          out.push(`| ${cell(code(r.name))} | ${r.in} | ${cell(typeOf(r.schema))} | ${cell(rulesOf(r.schema))} | ${r.required ? 'yes' : 'no'} |`);
        }
      }
    }
  }
  out.push('');
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------- command

const isMain = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (isMain) {
  const check = process.argv.includes('--check');
  const text = await generateApiDocs();
  if (check) {
    const current = await readFile(API_DOC_PATH, 'utf8').catch(() => '');
    if (current !== text) {
      console.error('docs/http-api.md is out of date: run `npm run docs:api`');
      process.exit(1);
    }
    console.log('docs/http-api.md is up to date');
  } else {
    await writeFile(API_DOC_PATH, text);
    console.log(`wrote ${API_DOC_PATH}`);
  }
}
