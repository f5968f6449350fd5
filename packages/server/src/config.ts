/**
 * Server configuration from the environment (DESIGN §2). `loadConfig()` reads and validates every variable once
 * at start-up and throws a {@link ConfigError} naming the variable and the bad value — except for secrets
 * (`DATABASE_URL`, `SWITCHYARD_ADMIN_TOKEN`, `SWITCHYARD_SECRET`), whose values never appear in a message.
 *
 * An empty variable (`PORT=`) counts as unset, as shells and `.env` files commonly produce them.
 */
import path from 'node:path';

/** Log levels accepted by pino (and `LOG_LEVEL`). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  /** HTTP port (`PORT`). 0 picks a free port. Default 3000. */
  port: number;
  /** HTTP listen address (`HOST`). Default `127.0.0.1` (loopback only; set `0.0.0.0` to expose). */
  host: string;
  /**
   * PostgreSQL URL (`DATABASE_URL`, `postgres://…` or `postgresql://…`). Undefined selects the embedded mode
   * (PGlite under {@link dataDir}). A secret: never log it.
   */
  databaseUrl: string | undefined;
  /** True when {@link databaseUrl} is unset: PGlite, embedded brokers and demo devices. */
  embedded: boolean;
  /** Directory for PGlite files, `secret.key` and `admin-token` (`SWITCHYARD_DATA_DIR`), absolute. Default `.switchyard` under the working directory. */
  dataDir: string;
  /**
   * TCP ports of the in-process Aedes brokers (`SWITCHYARD_EMBEDDED_BROKERS`, comma-separated; `none` for none).
   * Default `[1883, 1884]` in the embedded mode, `[]` with `DATABASE_URL`.
   */
  embeddedBrokers: number[];
  /** Admin bearer token (`SWITCHYARD_ADMIN_TOKEN`, ≥ 16 characters). Undefined: generate one at first start. A secret. */
  adminToken: string | undefined;
  /** Number of in-process demo device agents (`SWITCHYARD_DEMO_DEVICES`, 0–1000). Default 3. */
  demoDevices: number;
  /** Passphrase for secrets at rest (`SWITCHYARD_SECRET`, ≥ 16 characters). Undefined: `<dataDir>/secret.key`. A secret. */
  secret: string | undefined;
  /** Log level (`LOG_LEVEL`): fatal, error, warn, info, debug, trace or silent. Default `info`. */
  logLevel: LogLevel;
  /**
   * Distinct parameterised statements kept prepared on each PostgreSQL connection (`SWITCHYARD_PG_PREPARED_STATEMENTS`,
   * 0–10000; 0 = none, for a pooler such as PgBouncer in transaction mode). Default 256.
   */
  pgPreparedStatements: number;
  /** Most shadow updates written in one database batch (`SWITCHYARD_SHADOW_BATCH_MAX`, 1–100000). Default 500. */
  shadowBatchMax: number;
  /** Shadow requests waiting per batch lane before new ones get 429 (`SWITCHYARD_SHADOW_QUEUE_MAX`, 1–1000000). Default 2000. */
  shadowQueueMax: number;
  /**
   * Requests per second one device may make (`SWITCHYARD_DEVICE_RATE_LIMIT`, 0–100000; 0 = no limit), counted per
   * device and per kind (shadow requests; jobs requests; status and command acks), each with a burst of one
   * second's worth. Above it a shadow request gets 429 and a jobs request `RequestThrottled`. Default 20 (AWS IoT).
   */
  deviceRateLimit: number;
  /**
   * Requests of one device admitted and not yet answered (`SWITCHYARD_DEVICE_MAX_IN_FLIGHT`, 0–100000; 0 = no bound);
   * one more is refused like a request over the rate. Default 10 (AWS IoT).
   */
  deviceMaxInFlight: number;
  /** Seconds an assignment may take before its migration becomes `timed_out` (`SWITCHYARD_MIGRATION_TIMEOUT_S`, 1–86400). Default 120. */
  migrationTimeoutSeconds: number;
  /** How often overdue migrations are looked for, in ms (`SWITCHYARD_MIGRATION_SWEEP_MS`, 100–600000). Default 5000. */
  migrationSweepMs: number;
  /**
   * How `PUT /devices/:uuid/broker` tells the device when the request names no `channel`
   * (`SWITCHYARD_DEFAULT_CHANNEL`: shadow, command, job or poll). Default `shadow`.
   */
  defaultChannel: AssignmentChannelName;
  /** Seconds a `broker-change` command stays valid after it is sent (`SWITCHYARD_COMMAND_TTL_S`, 1–86400). Default 60. */
  commandTtlSeconds: number;
  /**
   * MQTT topic namespaces whose shadow and jobs topics are served (`SWITCHYARD_MQTT_NAMESPACES`, comma-separated:
   * `iot` = `iot/device/{uuid}/…`, `aws` = `$aws/things/{uuid}/…`). Default both. Deltas and job notifications go
   * out in every served namespace. Presence (`…/status`) and commands always use `iot/device/{uuid}/…`.
   */
  mqttNamespaces: MqttNamespaceName[];
}

/** The MQTT topic namespaces (the protocol package's `Namespace`, kept here so the config imports nothing). */
export const MQTT_NAMESPACE_NAMES = ['iot', 'aws'] as const;
export type MqttNamespaceName = (typeof MQTT_NAMESPACE_NAMES)[number];

/** The channels an assignment can be delivered on (kept here so the config has no import from a service). */
export const ASSIGNMENT_CHANNEL_NAMES = ['shadow', 'command', 'job', 'poll'] as const;
export type AssignmentChannelName = (typeof ASSIGNMENT_CHANNEL_NAMES)[number];

/** A configuration variable is malformed. `variable` names it; the message never holds a secret's value. */
export class ConfigError extends Error {
  readonly variable: string;
  constructor(variable: string, message: string) {
    super(message);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

type Env = Record<string, string | undefined>;

const SECRET_MIN_LENGTH = 16;

/** Reads, validates and defaults the server configuration. Throws {@link ConfigError} on the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const read = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };

  const databaseUrl = parseDatabaseUrl(read('DATABASE_URL'));
  const embedded = databaseUrl === undefined;
  const port = parseInteger('PORT', read('PORT'), { min: 0, max: 65535, fallback: 3000 });
  const embeddedBrokers = parsePortList('SWITCHYARD_EMBEDDED_BROKERS', read('SWITCHYARD_EMBEDDED_BROKERS'), embedded ? [1883, 1884] : []);
  if (port !== 0 && embeddedBrokers.includes(port)) {
    throw new ConfigError('SWITCHYARD_EMBEDDED_BROKERS', `SWITCHYARD_EMBEDDED_BROKERS holds port ${port}, which PORT already uses for HTTP`);
  }

  return {
    port,
    host: parseHost(read('HOST')),
    databaseUrl,
    embedded,
    dataDir: path.resolve(read('SWITCHYARD_DATA_DIR') ?? '.switchyard'),
    embeddedBrokers,
    adminToken: parseSecret('SWITCHYARD_ADMIN_TOKEN', read('SWITCHYARD_ADMIN_TOKEN'), { noWhitespace: true }),
    demoDevices: parseInteger('SWITCHYARD_DEMO_DEVICES', read('SWITCHYARD_DEMO_DEVICES'), { min: 0, max: 1000, fallback: 3 }),
    secret: parseSecret('SWITCHYARD_SECRET', read('SWITCHYARD_SECRET'), { noWhitespace: false }),
    logLevel: parseLogLevel(read('LOG_LEVEL')),
    pgPreparedStatements: parseInteger('SWITCHYARD_PG_PREPARED_STATEMENTS', read('SWITCHYARD_PG_PREPARED_STATEMENTS'), { min: 0, max: 10_000, fallback: 256 }),
    shadowBatchMax: parseInteger('SWITCHYARD_SHADOW_BATCH_MAX', read('SWITCHYARD_SHADOW_BATCH_MAX'), { min: 1, max: 100_000, fallback: 500 }),
    shadowQueueMax: parseInteger('SWITCHYARD_SHADOW_QUEUE_MAX', read('SWITCHYARD_SHADOW_QUEUE_MAX'), { min: 1, max: 1_000_000, fallback: 2000 }),
    deviceRateLimit: parseInteger('SWITCHYARD_DEVICE_RATE_LIMIT', read('SWITCHYARD_DEVICE_RATE_LIMIT'), { min: 0, max: 100_000, fallback: 20 }),
    deviceMaxInFlight: parseInteger('SWITCHYARD_DEVICE_MAX_IN_FLIGHT', read('SWITCHYARD_DEVICE_MAX_IN_FLIGHT'), { min: 0, max: 100_000, fallback: 10 }),
    migrationTimeoutSeconds: parseInteger('SWITCHYARD_MIGRATION_TIMEOUT_S', read('SWITCHYARD_MIGRATION_TIMEOUT_S'), { min: 1, max: 86_400, fallback: 120 }),
    migrationSweepMs: parseInteger('SWITCHYARD_MIGRATION_SWEEP_MS', read('SWITCHYARD_MIGRATION_SWEEP_MS'), { min: 100, max: 600_000, fallback: 5000 }),
    defaultChannel: parseChannel(read('SWITCHYARD_DEFAULT_CHANNEL')),
    commandTtlSeconds: parseInteger('SWITCHYARD_COMMAND_TTL_S', read('SWITCHYARD_COMMAND_TTL_S'), { min: 1, max: 86_400, fallback: 60 }),
    mqttNamespaces: parseNamespaces(read('SWITCHYARD_MQTT_NAMESPACES')),
  };
}

/** Quotes a user-supplied (non-secret) value for a message, truncated so a pasted blob stays readable. */
function shown(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}

function parseInteger(name: string, raw: string | undefined, o: { min: number; max: number; fallback: number }): number {
  if (raw === undefined) return o.fallback;
  const n = /^[0-9]+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < o.min || n > o.max) {
    throw new ConfigError(name, `${name} must be a whole number from ${o.min} to ${o.max}, got ${shown(raw)}`);
  }
  return n;
}

function parsePortList(name: string, raw: string | undefined, fallback: number[]): number[] {
  if (raw === undefined) return fallback;
  if (raw.toLowerCase() === 'none') return [];
  const ports: number[] = [];
  for (const part of raw.split(',')) {
    const item = part.trim();
    const n = /^[0-9]+$/.test(item) ? Number(item) : Number.NaN;
    if (!Number.isSafeInteger(n) || n < 1 || n > 65535) {
      throw new ConfigError(name, `${name} must be "none" or a comma-separated list of ports from 1 to 65535, got ${shown(raw)} (bad item ${shown(item)})`);
    }
    if (ports.includes(n)) throw new ConfigError(name, `${name} lists port ${n} twice: ${shown(raw)}`);
    ports.push(n);
  }
  return ports;
}

function parseHost(raw: string | undefined): string {
  if (raw === undefined) return '127.0.0.1';
  // A listen address: an IPv4/IPv6 literal or a resolvable name; no scheme, port or path.
  if (!/^[A-Za-z0-9.:_-]+$/.test(raw) || raw.length > 253) {
    throw new ConfigError('HOST', `HOST must be an IP address or host name without scheme or port (e.g. 127.0.0.1, 0.0.0.0, ::), got ${shown(raw)}`);
  }
  return raw;
}

function parseDatabaseUrl(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  // The value may hold a password: describe the problem without showing it.
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError('DATABASE_URL', 'DATABASE_URL is not a valid URL (value not shown: it may hold a password); expected postgres://user:password@host:5432/database');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError('DATABASE_URL', `DATABASE_URL must start with postgres:// or postgresql://, got scheme "${url.protocol.slice(0, 20)}" (rest of the value not shown)`);
  }
  return raw;
}

function parseSecret(name: string, raw: string | undefined, o: { noWhitespace: boolean }): string | undefined {
  if (raw === undefined) return undefined;
  if (raw.length < SECRET_MIN_LENGTH) {
    throw new ConfigError(name, `${name} must be at least ${SECRET_MIN_LENGTH} characters long, got ${raw.length} (value not shown)`);
  }
  if (o.noWhitespace && /\s/.test(raw)) {
    throw new ConfigError(name, `${name} must not contain whitespace (value not shown)`);
  }
  return raw;
}

function parseChannel(raw: string | undefined): AssignmentChannelName {
  if (raw === undefined) return 'shadow';
  const channel = raw.toLowerCase();
  if (!(ASSIGNMENT_CHANNEL_NAMES as readonly string[]).includes(channel)) {
    throw new ConfigError('SWITCHYARD_DEFAULT_CHANNEL', `SWITCHYARD_DEFAULT_CHANNEL must be one of ${ASSIGNMENT_CHANNEL_NAMES.join(', ')}, got ${shown(raw)}`);
  }
  return channel as AssignmentChannelName;
}

function parseNamespaces(raw: string | undefined): MqttNamespaceName[] {
  if (raw === undefined) return [...MQTT_NAMESPACE_NAMES];
  const names = raw.split(',').map((part) => part.trim().toLowerCase());
  const result: MqttNamespaceName[] = [];
  for (const name of names) {
    if (!(MQTT_NAMESPACE_NAMES as readonly string[]).includes(name)) {
      throw new ConfigError(
        'SWITCHYARD_MQTT_NAMESPACES',
        `SWITCHYARD_MQTT_NAMESPACES must be a comma-separated list of ${MQTT_NAMESPACE_NAMES.join(', ')} (at least one), got ${shown(raw)}`,
      );
    }
    if (!result.includes(name as MqttNamespaceName)) result.push(name as MqttNamespaceName);
  }
  return result;
}

function parseLogLevel(raw: string | undefined): LogLevel {
  if (raw === undefined) return 'info';
  const level = raw.toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError('LOG_LEVEL', `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got ${shown(raw)}`);
  }
  return level as LogLevel;
}
