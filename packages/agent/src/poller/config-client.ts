/**
 * `GET {apiUrl}/api/v1/devices/:uuid/config` with the device token (notes/assignment-contract.md, "Config
 * endpoint"): which broker the device should be on. Used at first boot (no state file yet) and by the config
 * poller (`config-poller.ts`) with `If-None-Match` and, for long-polls, `?wait=N`.
 *
 * Answers: 200 `{mqtt: {brokerId, broker, protocol, host, port} | null, version}` (+ ETag); 304 when
 * `If-None-Match` matches; 401/403/404 are permanent for this device; anything else (network error, 5xx, 429,
 * a malformed body) is transient and retried by the caller with backoff.
 */
import { brokerTargetFromDesired, type BrokerTarget } from '../broker-target.ts';

/** What the config endpoint said. */
export type DeviceConfig =
  | { status: 'ok'; mqtt: BrokerTarget | null; version: number; etag: string | null }
  | { status: 'not-modified'; etag: string | null };

/** The config could not be fetched. `permanent`: retrying will not help (bad token, unknown device). */
export class ConfigFetchError extends Error {
  override readonly name = 'ConfigFetchError';
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly httpStatus?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Options of {@link fetchDeviceConfig}. */
export interface FetchConfigOptions {
  apiUrl: string;
  deviceUuid: string;
  deviceToken: string;
  /** The fetch to use (injectable); default the global one. */
  fetch?: typeof fetch;
  /** Sends `If-None-Match`. */
  etag?: string;
  /** Long-poll: `?wait=N` seconds (the server holds the answer while `etag` still matches). */
  waitS?: number;
  /** Abort (agent stopping) and timeout. */
  signal?: AbortSignal;
}

/**
 * Fetches and validates the device's config.
 * @throws ConfigFetchError (never shows the token)
 */
export async function fetchDeviceConfig(options: FetchConfigOptions): Promise<DeviceConfig> {
  const base = `${options.apiUrl}/api/v1/devices/${encodeURIComponent(options.deviceUuid)}/config`;
  const url = options.waitS ? `${base}?wait=${options.waitS}` : base;
  const headers: Record<string, string> = { authorization: `Bearer ${options.deviceToken}`, accept: 'application/json' };
  if (options.etag) headers['if-none-match'] = options.etag;
  let res: Response;
  try {
    res = await (options.fetch ?? fetch)(url, { headers, ...(options.signal ? { signal: options.signal } : {}) });
  } catch (err) {
    throw new ConfigFetchError(`GET ${url} failed: ${(err as Error).message}`, false, undefined, { cause: err });
  }
  const etag = res.headers.get('etag');
  if (res.status === 304) return { status: 'not-modified', etag };
  const text = await res.text().catch(() => '');
  if (res.status !== 200) {
    let detail = '';
    try {
      const body = JSON.parse(text) as { code?: unknown; message?: unknown };
      if (typeof body.code === 'string') detail = ` ${body.code}`;
      if (typeof body.message === 'string') detail += `: ${body.message.slice(0, 200)}`;
    } catch {
      detail = '';
    }
    const permanent = res.status === 401 || res.status === 403 || res.status === 404;
    const hint =
      res.status === 401 || res.status === 403
        ? ' (check the device token)'
        : res.status === 404
          ? ' (unknown device uuid, or a server without the config endpoint)'
          : '';
    throw new ConfigFetchError(`GET ${url} answered ${res.status}${detail}${hint}`, permanent, res.status);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new ConfigFetchError(`GET ${url} answered 200 with a body that is not JSON`, false, 200);
  }
  return { status: 'ok', etag, ...parseConfigBody(body, url) };
}

/** Validates a 200 body. @throws ConfigFetchError (transient: a server mid-upgrade may answer oddly) */
export function parseConfigBody(body: unknown, source = 'config'): { mqtt: BrokerTarget | null; version: number } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ConfigFetchError(`${source}: expected a JSON object`, false, 200);
  }
  const o = body as Record<string, unknown>;
  const version = o.version ?? 0;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
    throw new ConfigFetchError(`${source}: version: expected a non-negative integer`, false, 200);
  }
  if (o.mqtt === null || o.mqtt === undefined) return { mqtt: null, version };
  const target = brokerTargetFromDesired(o.mqtt, 'mqtt');
  if (!target.ok) throw new ConfigFetchError(`${source}: ${target.errors.join('; ')}`, false, 200);
  return { mqtt: target.value, version };
}
