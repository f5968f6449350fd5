/** Traffic arithmetic of bench/channels.ts: a device's MQTT and HTTP counts (bench/lib/counting-proxy.ts), scaled, subtracted, totalled. */
import { diffStats, type TrafficStats } from './counting-proxy.ts';
import { round } from './stats.ts';

/** Traffic as plain numbers: up/down messages and bytes (and connections), MQTT and HTTP apart. */
export interface Traffic {
  mqtt: TrafficStats;
  http: TrafficStats;
}
export const scale = (s: TrafficStats, f: number): TrafficStats => ({
  up: { bytes: s.up.bytes * f, messages: s.up.messages * f, byType: Object.fromEntries(Object.entries(s.up.byType).map(([k, v]) => [k, v * f])) },
  down: { bytes: s.down.bytes * f, messages: s.down.messages * f, byType: Object.fromEntries(Object.entries(s.down.byType).map(([k, v]) => [k, v * f])) },
  connections: s.connections * f,
});
export const sub = (a: TrafficStats, b: TrafficStats): TrafficStats => diffStats(a, b);
export const roundStats = (s: TrafficStats, d = 1): TrafficStats => ({
  up: { bytes: round(s.up.bytes, d), messages: round(s.up.messages, d), byType: Object.fromEntries(Object.entries(s.up.byType).map(([k, v]) => [k, round(v, d)])) },
  down: { bytes: round(s.down.bytes, d), messages: round(s.down.messages, d), byType: Object.fromEntries(Object.entries(s.down.byType).map(([k, v]) => [k, round(v, d)])) },
  connections: round(s.connections, d),
});
/** up+down, MQTT+HTTP. */
export interface Totals {
  msgsUp: number;
  msgsDown: number;
  bytesUp: number;
  bytesDown: number;
}
export const totals = (t: Traffic): Totals => ({
  msgsUp: t.mqtt.up.messages + t.http.up.messages,
  msgsDown: t.mqtt.down.messages + t.http.down.messages,
  bytesUp: t.mqtt.up.bytes + t.http.up.bytes,
  bytesDown: t.mqtt.down.bytes + t.http.down.bytes,
});

export function mapTotals(t: Totals, digits: number): Totals {
  return { msgsUp: round(t.msgsUp, digits), msgsDown: round(t.msgsDown, digits), bytesUp: round(t.bytesUp, digits), bytesDown: round(t.bytesDown, digits) };
}

export const fmtNum = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
export const fmtPair = (up: number, down: number): string => `${fmtNum(up)} / ${fmtNum(down)}`;

/** x − y, MQTT and HTTP apart. */
export const trafficDiff = (x: Traffic, y: Traffic): Traffic => ({ mqtt: sub(x.mqtt, y.mqtt), http: sub(x.http, y.http) });
/** t × f, MQTT and HTTP apart. */
export const scaleTraffic = (t: Traffic, f: number): Traffic => ({ mqtt: scale(t.mqtt, f), http: scale(t.http, f) });
