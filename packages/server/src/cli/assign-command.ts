/**
 * `switchyard assign <uuid> <brokerId>`: assigns, then follows the migration until it ends, printing
 * each step. Exit code 0 when the device reports the move complete, 1 when it fails, times out or is
 * superseded, 2 for bad arguments.
 */
import { CliError, type AdminClient } from './admin-client.ts';

const FINAL = new Set(['completed', 'failed', 'superseded', 'canceled', 'timed_out']);

export async function assignCommand(
  client: AdminClient,
  uuid: string,
  brokerIdRaw: string,
  o: { channel?: string; wait: boolean; timeoutS: number; pollMs?: number },
  out: (line: string) => void,
): Promise<number> {
  if (!/^[1-9][0-9]{0,9}$/.test(brokerIdRaw)) throw new CliError(`brokerId must be a positive integer, got ${JSON.stringify(brokerIdRaw)}`, 2);
  const started = Date.now();
  const res = await client.request('PUT', `/devices/${encodeURIComponent(uuid)}/broker`, {
    brokerId: Number(brokerIdRaw),
    ...(o.channel ? { channel: o.channel } : {}),
  });
  out(`${res.message} (shadow version ${res.shadowVersion})`);
  if (!res.migration) return 0;
  out(`migration ${res.migration.id}: ${res.migration.status}`);
  if (!o.wait) return 0;
  let last = res.migration.status as string;
  let lastError: string | null = null;
  const deadline = started + o.timeoutS * 1000;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, o.pollMs ?? 100));
    const m = await client.request('GET', `/migrations/${res.migration.id}`);
    if (m.status !== last || m.error !== lastError) {
      const ms = Date.now() - started;
      out(`migration ${m.id}: ${m.status}${m.error ? ` (${m.error}; attempts ${m.attempts})` : ''}  +${ms} ms`);
      last = m.status;
      lastError = m.error;
    }
    if (FINAL.has(m.status)) return m.status === 'completed' ? 0 : 1;
  }
  out(`gave up waiting after ${o.timeoutS} s; the migration is still ${last} (the server keeps going)`);
  return 1;
}
