/**
 * The Switchyard HTTP API as the benches use it: calls with the bench's admin token (or a device's), broker and
 * device registration, the device's reported broker, and the server's SSE stream of migration events.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

/** The bootstrap admin token every bench starts its server with. */
export const ADMIN_TOKEN = 'sya_bench-admin-token-0123456789abcdef';

/** High-resolution wall clock (ms); the agent child (bench/lib/migration-agent.ts) uses the same formula. */
export const now = (): number => performance.timeOrigin + performance.now();

/** One API call: JSON body in and out, the admin token unless `token` is given; `etag` is the answer's ETag header. */
export type Api = <T = any>(method: string, path: string, body?: unknown, token?: string) => Promise<{ status: number; body: T; etag: string | null }>;

export function apiOf(url: string): Api {
  return async (method, path, body, token = ADMIN_TOKEN) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, etag: res.headers.get('etag') };
  };
}

/** Resolves when `pred()` holds, polling every `everyMs`; rejects after `ms`. */
export async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string, everyMs = 5): Promise<void> {
  const end = performance.now() + ms;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** `POST /api/v1/brokers` (plain MQTT at `host:port`); answers the broker's id. */
export async function registerBroker(api: Api, name: string, host: string, port: number): Promise<number> {
  const res = await api('POST', '/api/v1/brokers', { name, protocol: 'mqtt', host, port });
  if (res.status !== 201) throw new Error(`registering broker ${name}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.id as number;
}

/** `POST /api/v1/devices` on `brokerId`; answers the device's token. */
export async function registerDevice(api: Api, uuid: string, brokerId: number): Promise<string> {
  const res = await api('POST', '/api/v1/devices', { uuid, brokerId });
  if (res.status !== 201) throw new Error(`registering device ${uuid}: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.token as string;
}

/** True when the device's `device-state` shadow reports it connected to `brokerId`, with no delta left. */
export async function reportedOn(api: Api, uuid: string, brokerId: number): Promise<boolean> {
  const s = await api('GET', `/api/v1/devices/${uuid}/shadows/device-state`);
  const m = s.body?.state?.reported?.mqtt;
  return s.status === 200 && m?.status === 'connected' && m?.brokerId === brokerId && s.body?.state?.delta === undefined;
}

/** Statuses seen on the SSE stream, per migration id: status → when its event first arrived (`now()`). */
export type MigrationStatuses = Map<number, Record<string, number>>;

/**
 * Subscribes to the server's SSE stream of migration events (`GET /api/v1/events?types=migration`) and records in
 * `statuses` when each migration's each status first arrived. Answers the function that closes the stream.
 */
export async function watchMigrations(url: string, statuses: MigrationStatuses): Promise<() => Promise<void>> {
  const ac = new AbortController();
  const res = await fetch(`${url}/api/v1/events?types=migration`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: ac.signal });
  if (res.status !== 200 || !res.body) throw new Error(`GET /api/v1/events: ${res.status}`);
  const onEvent = (data: Record<string, any>, at: number): void => {
    const id = Number(data.id);
    const seen = statuses.get(id) ?? {};
    if (seen[data.status] === undefined) seen[data.status] = at;
    statuses.set(id, seen);
  };
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const at = now();
      buf += decoder.decode(value, { stream: true });
      let sep: number;
      while ((sep = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (event === 'migration' && data) onEvent(JSON.parse(data) as Record<string, any>, at);
      }
    }
  })().catch(() => undefined);
  return async () => {
    ac.abort();
    await pump;
  };
}
