/**
 * The devices of bench/config-poll.ts: registered through the API (hot), or inserted by SQL by the tens of
 * thousands (cold) — each with the `device-state` shadow an agent leaves behind and the ETag its config answers.
 */
import { createHash, randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestMosquitto } from '../../test/helpers/mosquitto.ts';
import { registerDevice, type Api } from './api.ts';
import type { PollDevice } from './config-poll-load.ts';

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T, R>(items: T[], n: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

/**
 * `uuids` registered one by one through the API (real tokens, 16 at once) on `brokerId` (`mosquitto`), each with
 * the shadow an agent leaves behind; answers them with their config's ETag, checked to give a 304.
 */
export async function registerPollingDevices(api: Api, serverUrl: string, mosquitto: TestMosquitto, brokerId: number, uuids: string[]): Promise<PollDevice[]> {
  return pool(uuids, 16, async (uuid) => {
    const token = await registerDevice(api, uuid, brokerId);
    const mqtt = { status: 'connected', brokerId, broker: mosquitto.url, protocol: 'mqtt', host: mosquitto.host, port: mosquitto.port };
    const sh = await api('POST', `/api/v1/devices/${uuid}/shadows/device-state`, { state: { reported: { mqtt } } }, token);
    if (sh.status !== 200) throw new Error(`shadow of ${uuid}: ${sh.status} ${JSON.stringify(sh.body)}`);
    const cfg = await api('GET', `/api/v1/devices/${uuid}/config`, undefined, token);
    if (cfg.status !== 200 || !cfg.etag) throw new Error(`config of ${uuid}: ${cfg.status} ${JSON.stringify(cfg.body)}`);
    const again = await fetch(`${serverUrl}/api/v1/devices/${uuid}/config`, { headers: { authorization: `Bearer ${token}`, 'if-none-match': cfg.etag } });
    if (again.status !== 304) throw new Error(`config of ${uuid} with If-None-Match: ${again.status}`);
    return { uuid, token, etag: cfg.etag };
  });
}

/**
 * `n` devices with real tokens on `brokerId`, each with the `device-state` shadow an agent leaves behind, inserted
 * with one statement per table (registering them through the API would take minutes); answers them with the ETag
 * the server will compute (`"<shadow version>.<brokerId>"`, checked on one device by the caller's first requests:
 * a wrong one shows as non-304 answers).
 */
export async function insertColdDevices(databaseUrl: string, brokerId: number, n: number): Promise<PollDevice[]> {
  const devs = Array.from({ length: n }, (_, i) => {
    const token = `syd_${randomBytes(32).toString('base64url')}`;
    return { uuid: `bench-cold-${i}`, token, hash: createHash('sha256').update(token, 'utf8').digest('hex') };
  });
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO devices (uuid, name, mqtt_broker_id, token_hash)
       SELECT u, u, $2::int, h FROM jsonb_to_recordset($1::jsonb) AS t(u text, h text)`,
      [JSON.stringify(devs.map((d) => ({ u: d.uuid, h: d.hash }))), brokerId],
    );
    await client.query(
      `INSERT INTO device_shadows (device_uuid, shadow_name, reported, version)
       SELECT u, 'device-state', jsonb_build_object('mqtt', jsonb_build_object('status', 'connected', 'brokerId', $2::int)), 1
         FROM jsonb_array_elements_text($1::jsonb) AS t(u)`,
      [JSON.stringify(devs.map((d) => d.uuid)), brokerId],
    );
    // As a table that grew over time would be: statistics current (or the planner may think the table still
    // holds the 1,000 hot devices), the inserted rows flushed — and no autovacuum ANALYZE or checkpoint running
    // inside the measured window.
    await client.query('ANALYZE devices');
    await client.query('ANALYZE device_shadows');
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
  return devs.map((d) => ({ uuid: d.uuid, token: d.token, etag: `"1.${brokerId}"` }));
}
