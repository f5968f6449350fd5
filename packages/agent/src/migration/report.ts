/**
 * `reported.mqtt` of the `device-state` shadow, built from the machine's `report` effect, exactly as the wire
 * contract with the server says (notes/assignment-contract.md, "The device's report"):
 * - `broker/protocol/host/port` always, so the delta on `desired.mqtt` clears once the device is there;
 * - fields that are no longer true are cleared with `null` (AWS shadow semantics: `null` deletes the key), e.g.
 *   `targetBrokerId`/`error`/`retryInMs` on `connected`;
 * - `previousBrokerId`/`migratedAt` only on the `connected` that ends a move (a reconnect leaves the last move's
 *   record as it was).
 * Pure; unit-tested.
 */
import type { JsonObject } from '@switchyard/protocol';
import type { ReportEffect } from './migration-types.ts';

/** The `reported.mqtt` object for one report. */
export function reportedMqtt(effect: ReportEffect): JsonObject {
  const { broker } = effect;
  const base: JsonObject = {
    status: effect.status,
    brokerId: broker.brokerId,
    broker: broker.url,
    protocol: broker.protocol,
    host: broker.host,
    port: broker.port,
    assignmentVersion: effect.assignmentVersion,
  };
  switch (effect.status) {
    case 'connected': {
      const out: JsonObject = { ...base, targetBrokerId: null, error: null, retryInMs: null, attempt: null };
      if (effect.previousBrokerId !== undefined) out.previousBrokerId = effect.previousBrokerId;
      if (effect.migratedAt !== undefined) out.migratedAt = new Date(effect.migratedAt).toISOString();
      return out;
    }
    case 'migrating':
      return {
        ...base,
        targetBrokerId: effect.targetBrokerId ?? null,
        attempt: effect.attempt ?? 0,
        error: null,
        retryInMs: null,
      };
    case 'error':
      return {
        ...base,
        targetBrokerId: effect.targetBrokerId ?? null,
        attempt: effect.attempt ?? 0,
        error: effect.error ?? 'unknown error',
        retryInMs: effect.retryInMs ?? null,
      };
    default: {
      const never: never = effect.status;
      throw new Error(`unknown report status ${String(never)}`);
    }
  }
}

/** True when `reported` (the shadow's `reported.mqtt`) already says the device is connected to `broker`. */
export function reportsConnectedTo(reported: JsonObject | undefined, broker: { brokerId: number; url: string; protocol: string; host: string; port: number }): boolean {
  if (!reported) return false;
  return (
    reported.status === 'connected' &&
    reported.brokerId === broker.brokerId &&
    reported.broker === broker.url &&
    reported.protocol === broker.protocol &&
    reported.host === broker.host &&
    reported.port === broker.port &&
    (reported.error === undefined || reported.error === null) &&
    (reported.targetBrokerId === undefined || reported.targetBrokerId === null)
  );
}
