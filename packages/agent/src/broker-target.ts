/**
 * A broker the agent can connect to, as the agent holds it in memory, in its persisted state and in the
 * migration machine. The server's `desired.mqtt = {brokerId, broker, protocol, host, port}` (DESIGN §5) maps
 * onto it with {@link brokerTargetFromDesired} (`broker` there is `url` here).
 */

/** Transport of a broker: plain MQTT over TCP, MQTT over TLS, MQTT over WebSocket, MQTT over secure WebSocket. */
export type BrokerProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss';

/** Every {@link BrokerProtocol}, in a fixed order. */
export const BROKER_PROTOCOLS: readonly BrokerProtocol[] = ['mqtt', 'mqtts', 'ws', 'wss'];

/** A broker the agent can connect to. */
export interface BrokerTarget {
  /** The server's broker id (`mqtt_broker_config.id`): a positive safe integer. */
  brokerId: number;
  /** Transport. */
  protocol: BrokerProtocol;
  /** Host name or IP address (an IPv6 address without brackets). */
  host: string;
  /** TCP port, 1–65535. */
  port: number;
  /** `protocol://host:port` (IPv6 hosts in brackets); what mqtt.js `connect()` takes. */
  url: string;
}

/** Result of validating an untrusted value: the value, or every problem found (paths like `broker.port`). */
export type Validation<T> = { ok: true; value: T } | { ok: false; errors: string[] };

/** `protocol://host:port`, with an IPv6 host in brackets. */
export function formatBrokerUrl(protocol: BrokerProtocol, host: string, port: number): string {
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${protocol}://${h}:${port}`;
}

/** True when both name the same broker at the same address (same id and same URL). */
export function sameBroker(a: BrokerTarget, b: BrokerTarget): boolean {
  return a.brokerId === b.brokerId && a.url === b.url;
}

function isBrokerProtocol(v: unknown): v is BrokerProtocol {
  return typeof v === 'string' && (BROKER_PROTOCOLS as readonly string[]).includes(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return v.length > 64 ? `a string of ${v.length} characters` : JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return typeof v;
}

/**
 * Validates the fields shared by both shapes; `urlKey` is `url` (agent form) or `broker` (the shadow's form).
 * Never throws.
 */
function validateTarget(value: unknown, path: string, urlKey: 'url' | 'broker'): Validation<BrokerTarget> {
  const errors: string[] = [];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, errors: [`${path}: expected an object, got ${describe(value)}`] };
  }
  const o = value as Record<string, unknown>;
  const { brokerId, protocol, host, port } = o;
  const url = o[urlKey];
  if (typeof brokerId !== 'number' || !Number.isSafeInteger(brokerId) || brokerId < 1) {
    errors.push(`${path}.brokerId: expected a positive integer, got ${describe(brokerId)}`);
  }
  if (!isBrokerProtocol(protocol)) {
    errors.push(`${path}.protocol: expected one of ${BROKER_PROTOCOLS.join('|')}, got ${describe(protocol)}`);
  }
  // Hosts become part of a URL: refuse anything with whitespace, slashes or an '@' (userinfo smuggling).
  if (typeof host !== 'string' || host.length === 0 || host.length > 253 || /[\s/@?#]/.test(host)) {
    errors.push(`${path}.host: expected a host name or IP address, got ${describe(host)}`);
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    errors.push(`${path}.port: expected an integer 1–65535, got ${describe(port)}`);
  }
  if (typeof url !== 'string') {
    errors.push(`${path}.${urlKey}: expected a string "protocol://host:port", got ${describe(url)}`);
  } else if (errors.length === 0) {
    const expected = formatBrokerUrl(protocol as BrokerProtocol, host as string, port as number);
    if (url !== expected) {
      errors.push(`${path}.${urlKey}: expected ${JSON.stringify(expected)} (from protocol, host and port), got ${describe(url)}`);
    }
  }
  if (errors.length > 0) return { ok: false, errors };
  return {
    ok: true,
    value: {
      brokerId: brokerId as number,
      protocol: protocol as BrokerProtocol,
      host: host as string,
      port: port as number,
      url: url as string,
    },
  };
}

/**
 * Validates an untrusted value as a {@link BrokerTarget} (e.g. read from the state file). The `url` must be
 * exactly `formatBrokerUrl(protocol, host, port)`, so the two can never disagree. Never throws.
 * @param path prefix for error messages, e.g. `broker`
 */
export function parseBrokerTarget(value: unknown, path = 'broker'): Validation<BrokerTarget> {
  return validateTarget(value, path, 'url');
}

/**
 * Maps the server's `desired.mqtt` (`{brokerId, broker: "proto://host:port", protocol, host, port}`,
 * DESIGN §5) to a {@link BrokerTarget}, with the same validation as {@link parseBrokerTarget}. Extra keys are
 * ignored. Never throws.
 */
export function brokerTargetFromDesired(mqtt: unknown, path = 'desired.mqtt'): Validation<BrokerTarget> {
  return validateTarget(mqtt, path, 'broker');
}
