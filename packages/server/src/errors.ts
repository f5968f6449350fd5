/**
 * The error catalogue. Every error the HTTP API answers with is one of these codes;
 * `docs/errors.md` lists each of them (a test keeps the two in step).
 * The answer body is always `{ error, message, code }`: `error` is the HTTP reason phrase,
 * `code` the catalogue key, `message` a specific, human sentence without secrets.
 */
export const ERROR_CATALOGUE = {
  VALIDATION_FAILED: { status: 400, summary: 'The request body, query or path parameter is malformed.' },
  INVALID_JSON: { status: 400, summary: 'The body is not valid JSON.' },
  UNAUTHORIZED: { status: 401, summary: 'No valid bearer token was given.' },
  FORBIDDEN: { status: 403, summary: 'The token is valid but may not do this.' },
  NOT_FOUND: { status: 404, summary: 'No such route.' },
  BROKER_NOT_FOUND: { status: 404, summary: 'No broker with this id.' },
  DEVICE_NOT_FOUND: { status: 404, summary: 'No device with this uuid.' },
  MIGRATION_NOT_FOUND: { status: 404, summary: 'No broker migration with this id.' },
  SHADOW_NOT_FOUND: { status: 404, summary: 'The device has no shadow with this name.' },
  JOB_NOT_FOUND: { status: 404, summary: 'No job (execution) with this id for this device.' },
  TOKEN_NOT_FOUND: { status: 404, summary: 'No API token with this id.' },
  METHOD_NOT_ALLOWED: { status: 405, summary: 'The route exists but not with this method.' },
  REQUEST_TIMEOUT: { status: 408, summary: 'The request was not received completely in time.' },
  BROKER_NAME_TAKEN: { status: 409, summary: 'Another broker already has this name.' },
  BROKER_IN_USE: { status: 409, summary: 'Devices are assigned to this broker; move them first.' },
  BROKER_NOT_ACTIVE: { status: 409, summary: 'The broker is draining or disabled; devices cannot be assigned to it.' },
  DEVICE_EXISTS: { status: 409, summary: 'A device with this uuid is already registered.' },
  DEVICE_SECRET_UNAVAILABLE: { status: 409, summary: 'The device has no stored secret to give a broker that needs one; rotate its token first.' },
  SHADOW_VERSION_CONFLICT: { status: 409, summary: 'The shadow version in the request is not the current one.' },
  JOB_INVALID_STATE_TRANSITION: { status: 409, summary: 'The job execution cannot move to this status from its current one.' },
  JOB_VERSION_MISMATCH: { status: 409, summary: 'The expectedVersion of a job update is not the execution’s current version.' },
  JOB_TERMINAL_STATE: { status: 410, summary: 'The job execution is in a terminal state.' },
  PAYLOAD_TOO_LARGE: { status: 413, summary: 'The body or the resulting shadow state is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'The body is not UTF-8 JSON.' },
  TOO_MANY_REQUESTS: { status: 429, summary: 'Too many requests for this device; retry later.' },
  HEADERS_TOO_LARGE: { status: 431, summary: 'The request line and headers are larger than 16 KiB.' },
  INTERNAL: { status: 500, summary: 'An unexpected failure; it was logged with a request id.' },
  NOT_READY: { status: 503, summary: 'The database or a broker is not reachable.' },
} as const satisfies Record<string, { status: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** An error whose code is in the catalogue; the HTTP error handler maps it to its status. */
export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Extra fields merged into the answer body (never secrets). */
  readonly details?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    if (details !== undefined) this.details = details;
  }
}

export function isAppError(err: unknown): err is AppError {
  return err instanceof AppError;
}
