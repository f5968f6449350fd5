/**
 * The one place where errors become HTTP answers: `{ error, message, code }` (+ details), `code` from the
 * catalogue in `../errors.ts`. Everything unexpected is a 500 INTERNAL that is logged with the request id and
 * answered without its message or stack (they may hold SQL, paths or secrets).
 */
import { STATUS_CODES } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ERROR_CATALOGUE, type ErrorCode } from '../errors.ts';
import { describeValidationErrors } from './validation.ts';

export interface ErrorBody {
  error: string;
  message: string;
  code: ErrorCode;
  [detail: string]: unknown;
}

export function errorBody(code: ErrorCode, message: string, details?: Record<string, unknown>): ErrorBody {
  const status = ERROR_CATALOGUE[code].status;
  // Details first, so they can never overwrite the three fixed fields.
  return { ...details, error: STATUS_CODES[status] ?? 'Error', message, code };
}

/** Maps any thrown value to a status and body; `internal` marks the ones that must be logged as failures. */
export function toErrorAnswer(err: unknown, requestId: string, bodyLimit: number): { status: number; body: ErrorBody; internal: boolean } {
  if (err instanceof AppError) {
    return { status: err.status, body: errorBody(err.code, err.message, err.details), internal: err.code === 'INTERNAL' };
  }
  const fe = err as Partial<FastifyError> | null;
  if (fe !== null && typeof fe === 'object') {
    if (Array.isArray(fe.validation)) {
      const fields = describeValidationErrors(fe.validation, fe.validationContext);
      const message = fields.length > 0 ? fields.map((f) => `${f.field} ${f.message}`).join('; ') : 'The request is malformed';
      return { status: 400, body: errorBody('VALIDATION_FAILED', message, { fields }), internal: false };
    }
    const known = fastifyCodeToAnswer(fe.code, bodyLimit);
    if (known !== null) return { ...known, internal: false };
    // Any other client error Fastify raised (bad URL, …): keep its status, catalogue code by status.
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
      const code = codeForStatus(fe.statusCode);
      if (code !== null) return { status: ERROR_CATALOGUE[code].status, body: errorBody(code, ERROR_CATALOGUE[code].summary), internal: false };
    }
  }
  return {
    status: 500,
    body: errorBody('INTERNAL', `An unexpected error occurred; it was logged with request id ${requestId}`, { requestId }),
    internal: true,
  };
}

function fastifyCodeToAnswer(code: string | undefined, bodyLimit: number): { status: number; body: ErrorBody } | null {
  const answer = (c: ErrorCode, message: string) => ({ status: ERROR_CATALOGUE[c].status, body: errorBody(c, message) });
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return answer('INVALID_JSON', 'The body is not valid JSON (or it holds a forbidden "__proto__" or "constructor.prototype" key)');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return answer('INVALID_JSON', 'The body is empty although Content-Type is application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return answer('PAYLOAD_TOO_LARGE', `The body is larger than ${bodyLimit} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return answer('UNSUPPORTED_MEDIA_TYPE', 'Only application/json bodies are accepted; set Content-Type: application/json');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return answer('VALIDATION_FAILED', 'The Content-Length header does not match the body');
    case 'FST_ERR_BAD_URL':
      return answer('VALIDATION_FAILED', 'The URL holds a malformed percent-encoded path segment');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return answer('VALIDATION_FAILED', 'A path parameter is too long');
    default:
      return null;
  }
}

function codeForStatus(status: number): ErrorCode | null {
  switch (status) {
    case 400:
      return 'VALIDATION_FAILED';
    case 401:
      return 'UNAUTHORIZED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 413:
      return 'PAYLOAD_TOO_LARGE';
    case 415:
      return 'UNSUPPORTED_MEDIA_TYPE';
    case 429:
      return 'TOO_MANY_REQUESTS';
    default:
      return null;
  }
}

/** Sends the answer for `err`, logging unexpected failures with the request id (never the body or headers). */
export function sendError(err: unknown, request: FastifyRequest, reply: FastifyReply, bodyLimit: number): FastifyReply {
  const { status, body, internal } = toErrorAnswer(err, request.id, bodyLimit);
  if (internal) {
    request.log.error({ err, reqId: request.id, method: request.method, url: request.routeOptions.url ?? request.url }, 'request failed with an unexpected error; answered 500 INTERNAL');
  } else if (status >= 500) {
    request.log.warn({ code: body.code, reqId: request.id }, body.message);
  } else {
    request.log.debug({ code: body.code, status }, 'request refused');
  }
  // Every 429 comes from a per-second limit (a device's rate, its requests in flight, a full queue): one second on.
  if (status === 429 && !reply.hasHeader('retry-after')) reply.header('retry-after', '1');
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}

/**
 * Error handler, 404/405 handler and the handler of errors Fastify raises before routing (bad URL, …).
 * `knownRoutes` is filled by an onRoute hook, so an unknown method on a known path answers 405 with `Allow`.
 */
export function installErrorHandling(app: FastifyInstance, bodyLimit: number): void {
  const routes: Array<{ re: RegExp; method: string }> = [];
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const pattern = route.url
      .split('/')
      .map((seg) => (seg.startsWith(':') ? '[^/]+' : seg === '*' ? '.*' : seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    const re = new RegExp(`^${pattern}/?$`);
    for (const method of methods) routes.push({ re, method: method.toUpperCase() });
  });

  app.setErrorHandler((err, request, reply) => sendError(err, request, reply, bodyLimit));

  app.setNotFoundHandler((request, reply) => {
    const full = request.url.split('?')[0] ?? request.url;
    const path = full.length > 200 ? `${full.slice(0, 200)}…` : full;
    const allowed = [...new Set(routes.filter((r) => r.re.test(full)).map((r) => r.method))];
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendError(new AppError('METHOD_NOT_ALLOWED', `${request.method} is not allowed on ${path}; allowed: ${allowed.join(', ')}`), request, reply, bodyLimit);
    }
    return sendError(new AppError('NOT_FOUND', `No route ${request.method} ${path}`), request, reply, bodyLimit);
  });
}
