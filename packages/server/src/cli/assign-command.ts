/**
 * `switchyard assign <uuid> <brokerId>`: assigns, then follows the migration until it ends, printing
 * each step as the server announces it (`GET /api/v1/events`, opened before the assignment so no step
 * is missed). Exit code 0 when the device reports the move complete, 1 when it fails, times out or is
 * superseded, 2 for bad arguments.
 */
import { DEVICE_UUID_RE } from '@switchyard/protocol';
import { ASSIGNMENT_CHANNEL_NAMES } from '../config.ts';
import { CliError, type AdminClient } from './admin-client.ts';

const FINAL = new Set(['completed', 'failed', 'superseded', 'canceled', 'timed_out']);
/** Steps only move forward; an event that arrives late (the stream and the GET race) is not shown again. */
const RANK: Record<string, number> = { pending: 0, notified: 1, migrating: 2 };
const rank = (status: string): number => RANK[status] ?? 3;

interface MigrationEvent {
  id: number;
  status: string;
  error: string | null;
  attempts: number;
}

/** Yields `migration` events from the server's SSE stream until `signal` aborts. */
async function* migrationEvents(client: AdminClient, signal: AbortSignal): AsyncGenerator<MigrationEvent> {
  const res = await fetch(`${client.baseUrl}/api/v1/events?types=migration`, { headers: { authorization: `Bearer ${client.token}` }, signal });
  if (!res.ok || !res.body) throw new CliError(`cannot follow events: HTTP ${res.status}`);
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of res.body) {
    buf += decoder.decode(chunk as Uint8Array, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (/^event: migration$/m.test(block) && data) yield JSON.parse(data) as MigrationEvent;
    }
  }
}

export async function assignCommand(
  client: AdminClient,
  uuid: string,
  brokerIdRaw: string,
  o: { channel?: string; wait: boolean; timeoutS: number },
  out: (line: string) => void,
): Promise<number> {
  if (!DEVICE_UUID_RE.test(uuid)) throw new CliError(`uuid must be 1-128 characters of A-Z, a-z, 0-9, ':', '_' and '-', got ${JSON.stringify(uuid.length > 140 ? `${uuid.slice(0, 140)}…` : uuid)}`, 2);
  if (!/^[1-9][0-9]{0,9}$/.test(brokerIdRaw) || Number(brokerIdRaw) > 2_147_483_647) throw new CliError(`brokerId must be a positive integer (at most 2147483647), got ${JSON.stringify(brokerIdRaw)}`, 2);
  if (o.channel !== undefined && !(ASSIGNMENT_CHANNEL_NAMES as readonly string[]).includes(o.channel)) {
    throw new CliError(`--channel must be one of ${ASSIGNMENT_CHANNEL_NAMES.join(', ')}, got ${JSON.stringify(o.channel)}`, 2);
  }
  // A timer above 2^31-1 ms fires at once (Node clamps it to 1 ms): the bound keeps "wait a long time" meaning that.
  if (!Number.isSafeInteger(o.timeoutS) || o.timeoutS < 1 || o.timeoutS > 86_400) throw new CliError(`--timeout must be 1-86400 seconds, got ${JSON.stringify(String(o.timeoutS))}`, 2);
  const started = Date.now();
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), o.timeoutS * 1000);
  const events = o.wait ? migrationEvents(client, ctrl.signal) : null;
  // Start reading (the request is sent on the first next()) before the assignment exists.
  const first = events?.next();
  first?.catch(() => undefined); // read (or aborted) below; never an unhandled rejection
  try {
    const res = await client.request('PUT', `/devices/${encodeURIComponent(uuid)}/broker`, {
      brokerId: Number(brokerIdRaw),
      ...(o.channel ? { channel: o.channel } : {}),
    });
    out(`${res.message} (shadow version ${res.shadowVersion})`);
    if (!res.migration) return 0;
    const id: number = res.migration.id;
    out(`migration ${id}: ${res.migration.status}`);
    if (!events || !first) return 0;
    let last = res.migration.status as string;
    const show = (m: MigrationEvent): number | null => {
      if (m.id !== id || rank(m.status) < rank(last)) return null;
      if (m.status !== last || m.error) out(`migration ${id}: ${m.status}${m.error ? ` (${m.error}; attempts ${m.attempts})` : ''}  +${Date.now() - started} ms`);
      last = m.status;
      return FINAL.has(m.status) ? (m.status === 'completed' ? 0 : 1) : null;
    };
    // The move may have ended before the stream caught up: ask once, then follow the stream.
    const now = await client.request<MigrationEvent>('GET', `/migrations/${id}`);
    const early = show(now);
    if (early !== null) return early;
    for (let r = await first; !r.done; r = await events.next()) {
      const code = show(r.value);
      if (code !== null) return code;
    }
    return 1;
  } catch (err) {
    if (ctrl.signal.aborted) {
      out(`gave up waiting after ${o.timeoutS} s; the server keeps going (GET /api/v1/migrations to follow it)`);
      return 1;
    }
    throw err;
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
}
