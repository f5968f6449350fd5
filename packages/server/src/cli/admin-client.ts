/**
 * The admin CLI's HTTP client: `switchyard brokers|devices|assign` talk to a running server's API.
 * Where the server is: `--api-url` / `SWITCHYARD_API_URL` (default http://127.0.0.1:3000).
 * The token: `--token` / `SWITCHYARD_ADMIN_TOKEN`, else `<SWITCHYARD_DATA_DIR>/admin-token` (the file the
 * embedded mode writes on first start).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

export class CliError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ClientOptions {
  apiUrl?: string;
  token?: string;
}

export async function resolveClient(o: ClientOptions, env = process.env): Promise<AdminClient> {
  const raw = o.apiUrl ?? env.SWITCHYARD_API_URL ?? 'http://127.0.0.1:3000';
  let base: URL;
  try {
    base = new URL(raw);
  } catch {
    throw new CliError(`--api-url must be an http(s) URL, got ${JSON.stringify(raw)}`, 2);
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw new CliError(`--api-url must be http or https, got ${base.protocol}`, 2);
  let token = o.token ?? env.SWITCHYARD_ADMIN_TOKEN;
  if (!token) {
    const file = path.join(path.resolve(env.SWITCHYARD_DATA_DIR ?? '.switchyard'), 'admin-token');
    try {
      token = (await readFile(file, 'utf8')).trim();
    } catch {
      throw new CliError(`no admin token: pass --token, set SWITCHYARD_ADMIN_TOKEN, or run where ${file} exists`, 2);
    }
  }
  // A token with whitespace or control characters cannot be sent as a header (fetch would fail as if the server were
  // unreachable); say so without showing it.
  // eslint-disable-next-line no-control-regex
  if (/[\s\u0000-\u001f\u007f]/.test(token) || /[^\u0000-\u00ff]/.test(token)) {
    throw new CliError('the admin token (--token, SWITCHYARD_ADMIN_TOKEN or the admin-token file) holds whitespace, control or non-Latin-1 characters (value not shown)', 2);
  }
  return new AdminClient(base.toString().replace(/\/$/, ''), token);
}

export class AdminClient {
  constructor(readonly baseUrl: string, readonly token: string) {}

  async request<T = any>(method: string, p: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.baseUrl}/api/v1${p}`, {
        method,
        headers: { authorization: `Bearer ${this.token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (err) {
      throw new CliError(`cannot reach ${this.baseUrl}: ${(err as Error).message}`);
    }
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const msg = parsed?.message ?? `HTTP ${res.status}`;
      throw new CliError(`${method} ${p}: ${msg}${parsed?.code ? ` (${parsed.code})` : ''}`);
    }
    return parsed as T;
  }
}

/** A plain text table (no colours: the output may be piped). */
export function table(rows: Array<Record<string, unknown>>, columns: string[]): string {
  const cell = (v: unknown): string => (v === null || v === undefined ? '-' : String(v));
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => cell(r[c]))))].join('\n');
}
