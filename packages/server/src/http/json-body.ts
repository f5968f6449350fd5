/**
 * The JSON body parser of every route (the shadow routes keep their own byte-level one, with AWS's messages):
 * - strict UTF-8: a body that is not valid UTF-8 is 415 UNSUPPORTED_MEDIA_TYPE, as docs/errors.md says (Fastify's
 *   default parser would turn the bad bytes into U+FFFD and store them);
 * - Fastify's own secure parsing (`__proto__` / `constructor.prototype` keys refused, empty body refused);
 * - no string PostgreSQL cannot store: a NUL character or an unpaired UTF-16 surrogate anywhere in the document (a
 *   key or a value, at any depth) is 400 VALIDATION_FAILED instead of a database error answered 500;
 * - at most {@link MAX_BODY_DEPTH} levels of nesting: a job document 6,000 levels deep made `JSON.stringify` overflow
 *   the stack (500). No body of this API needs more (shadow state allows 6, under its own parser).
 * Found by test/integration/http-fuzz.test.ts.
 */
import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.ts';

const decoder = new TextDecoder('utf-8', { fatal: true });
// NUL, or a surrogate that is not part of a pair.
// eslint-disable-next-line no-control-regex
const UNSTORABLE_RE = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Levels of objects and arrays a JSON body may nest. */
export const MAX_BODY_DEPTH = 64;

/**
 * Why a parsed JSON body cannot be taken — the path (`body.a.b[2]`) of the first key or string that PostgreSQL cannot
 * store, or a nesting deeper than `maxDepth` — or null. Iterative, so any depth is safe to inspect.
 */
export function bodyProblem(value: unknown, maxDepth = MAX_BODY_DEPTH, root = 'body'): string | null {
  const stack: Array<[unknown, string, number]> = [[value, root, 0]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop()!;
    if (typeof v === 'string') {
      if (UNSTORABLE_RE.test(v)) return `${path} holds a NUL character or an unpaired UTF-16 surrogate, which cannot be stored`;
      continue;
    }
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= maxDepth) return `${root} is nested more than ${maxDepth} levels deep`;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${path}[${i}]`, depth + 1]);
      continue;
    }
    for (const [k, child] of Object.entries(v)) {
      if (UNSTORABLE_RE.test(k)) return `${path} has a key with a NUL character or an unpaired UTF-16 surrogate, which cannot be stored`;
      // eslint-disable-next-line no-control-regex
      stack.push([child, `${path}.${(k.length > 40 ? `${k.slice(0, 40)}…` : k).replace(/[\u0000-\u001f\u007f]/g, '?')}`, depth + 1]);
    }
  }
  return null;
}

/** Replaces the `application/json` parser of `app` (and of every plugin that does not register its own). */
export function installJsonBodyParser(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    let text: string;
    try {
      text = decoder.decode(body as Buffer);
    } catch {
      done(new AppError('UNSUPPORTED_MEDIA_TYPE', 'The body is not valid UTF-8; send UTF-8 JSON with Content-Type: application/json'), undefined);
      return;
    }
    parse(request, text, (err, value) => {
      if (err) {
        done(err, undefined);
        return;
      }
      const problem = bodyProblem(value);
      if (problem !== null) {
        done(new AppError('VALIDATION_FAILED', problem), undefined);
        return;
      }
      done(null, value);
    });
  });
}
