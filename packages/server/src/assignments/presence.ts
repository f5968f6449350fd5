/**
 * Presence: devices announce `{state: online|offline, brokerId, at}` on `iot/device/{uuid}/status`
 * (online on every connect, offline as their MQTT will and before leaving a broker cleanly).
 * The server keeps `devices.connected_broker_id` / `online` so it knows which broker reaches a device.
 */
import type { Queryable } from '../db/db.ts';
import type { Logger } from '../log.ts';
import { setPresence } from './assignments.store.ts';

export interface PresenceMessage {
  state: 'online' | 'offline';
  brokerId: number;
}

/** Parses a status payload; null (with the reason) for anything malformed. */
export function parseStatus(payload: Buffer): { ok: true; value: PresenceMessage } | { ok: false; reason: string } {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    return { ok: false, reason: 'not UTF-8 JSON' };
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return { ok: false, reason: 'not an object' };
  const o = v as Record<string, unknown>;
  if (o.state !== 'online' && o.state !== 'offline') return { ok: false, reason: 'state must be "online" or "offline"' };
  if (typeof o.brokerId !== 'number' || !Number.isSafeInteger(o.brokerId) || o.brokerId < 1) return { ok: false, reason: 'brokerId must be a positive integer' };
  return { ok: true, value: { state: o.state, brokerId: o.brokerId } };
}

export function createPresenceHandler(opts: { db: Queryable; log: Logger; onChange?(uuid: string, p: PresenceMessage): void }) {
  const log = opts.log.child({ component: 'presence' });
  return {
    async handle(arrivedOn: number, deviceUuid: string, payload: Buffer): Promise<void> {
      const parsed = parseStatus(payload);
      if (!parsed.ok) {
        log.debug({ deviceUuid, brokerId: arrivedOn, reason: parsed.reason }, 'ignored malformed status message');
        return;
      }
      if (parsed.value.brokerId !== arrivedOn) {
        // A device cannot be "online on B" by saying so on A.
        log.debug({ deviceUuid, brokerId: arrivedOn, claimed: parsed.value.brokerId }, 'ignored status naming another broker');
        return;
      }
      try {
        const changed = await setPresence(opts.db, deviceUuid, arrivedOn, parsed.value.state === 'online');
        if (changed) opts.onChange?.(deviceUuid, parsed.value);
      } catch (err) {
        log.error({ err, deviceUuid, brokerId: arrivedOn }, 'could not record presence; the next status message will');
      }
    },
  };
}
