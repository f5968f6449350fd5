/**
 * Options of the device agent (DESIGN §2, §6): each from a `--flag` of `switchyard-agent` or from its
 * environment variable, the flag winning. Validation names the flag or variable and the bad value — except
 * the device token, which no message ever repeats.
 *
 * Beyond the contract: the §6 flags also read `SWITCHYARD_CHANNELS`, `SWITCHYARD_POLL_INTERVAL_MS`,
 * `SWITCHYARD_LONG_POLL_S`, `SWITCHYARD_FALLBACK_AFTER_MS` (containers configure by environment), and
 * `--log-level` / `LOG_LEVEL` as the server does, and `--ca-file` / `SWITCHYARD_CA_FILE`: a PEM bundle of the
 * CAs trusted for `mqtts`/`wss` brokers besides Node's root store (docs/tls.md). Parsing here checks only the
 * path's shape; the file itself is read and checked when the agent starts (`connection/ca-bundle.ts`).
 */
import { parseArgs } from 'node:util';
import { join } from 'node:path';
import { isValidDeviceUuid } from '@switchyard/protocol';

/** Channels an assignment can arrive on. */
export type AgentChannel = 'shadow' | 'command' | 'job' | 'poll';

/** Every {@link AgentChannel}, in the order the agent lists them. */
export const AGENT_CHANNELS: readonly AgentChannel[] = ['shadow', 'command', 'job', 'poll'];

/** Log levels accepted by `--log-level` (pino's). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** A pino log level. */
export type AgentLogLevel = (typeof LOG_LEVELS)[number];

/** The agent's validated configuration. */
export interface AgentConfig {
  /** Base URL of the Switchyard HTTP API, without a trailing slash, e.g. `http://127.0.0.1:3000`. Required. */
  apiUrl: string;
  /** This device's uuid (1–128 of `[A-Za-z0-9:_-]`). Required. */
  deviceUuid: string;
  /** This device's token (HTTP bearer and MQTT password). Required. Prefer the environment: flags show in `ps`. */
  deviceToken: string;
  /** Directory of the persisted state (`agent-state.json`). Default `.switchyard/agents/<deviceUuid>` (relative to the working directory). */
  stateDir: string;
  /** Heartbeat telemetry period in ms; 0 = off (default). Otherwise 10–86400000. */
  heartbeatMs: number;
  /** Channels to listen on for assignments; default all four. Deduplicated, in {@link AGENT_CHANNELS} order. */
  channels: AgentChannel[];
  /** Config poll period in ms (channel `poll`, and the MQTT fallback); ± 50 % jitter; default 60000; 100–86400000. */
  pollIntervalMs: number;
  /** Long-poll wait in seconds (`?wait=`); 0 = plain polling (default); at most 60 (the server's limit). */
  longPollS: number;
  /** MQTT down this long (ms) → poll the config over HTTP; default 30000; 0 = at once; at most 86400000. */
  fallbackAfterMs: number;
  /** Log level; default `info`. */
  logLevel: AgentLogLevel;
  /**
   * PEM file of the CA certificates trusted for `mqtts`/`wss` brokers, in addition to Node's root store; null
   * (default) = Node's store only. Read and checked at start.
   */
  caFile: string | null;
}

/** One bad option. */
export interface AgentConfigIssue {
  /** Where the value came from: the flag (`--heartbeat-ms`) or the variable (`SWITCHYARD_HEARTBEAT_MS`). */
  option: string;
  /** What is wrong, with the offending value (never for the token). */
  message: string;
}

/** The configuration is unusable; `issues` lists every problem, the message all of them. */
export class AgentConfigError extends Error {
  override readonly name = 'AgentConfigError';
  readonly code = 'AGENT_CONFIG_INVALID';
  constructor(readonly issues: AgentConfigIssue[]) {
    super(`invalid agent configuration: ${issues.map((i) => `${i.option}: ${i.message}`).join('; ')}`);
  }
}

type Key = keyof AgentConfig;

interface OptionSpec {
  key: Key;
  flag: string;
  env: string;
  /** Placeholder in the usage text. */
  arg: string;
  description: string;
}

/** Every option: flag, environment variable, description. Drives parsing and {@link agentUsage}. */
export const AGENT_OPTIONS: readonly OptionSpec[] = [
  { key: 'apiUrl', flag: 'api-url', env: 'SWITCHYARD_API_URL', arg: '<url>', description: 'Switchyard API base URL (required)' },
  { key: 'deviceUuid', flag: 'device-uuid', env: 'SWITCHYARD_DEVICE_UUID', arg: '<uuid>', description: 'device uuid (required)' },
  {
    key: 'deviceToken',
    flag: 'device-token',
    env: 'SWITCHYARD_DEVICE_TOKEN',
    arg: '<token>',
    description: 'device token (required; prefer the environment variable)',
  },
  { key: 'stateDir', flag: 'state-dir', env: 'SWITCHYARD_STATE_DIR', arg: '<dir>', description: 'state directory (default .switchyard/agents/<uuid>)' },
  { key: 'heartbeatMs', flag: 'heartbeat-ms', env: 'SWITCHYARD_HEARTBEAT_MS', arg: '<ms>', description: 'heartbeat period, 0 = off (default 0)' },
  {
    key: 'channels',
    flag: 'channels',
    env: 'SWITCHYARD_CHANNELS',
    arg: '<list>',
    description: 'assignment channels, comma-separated: shadow,command,job,poll (default all)',
  },
  { key: 'pollIntervalMs', flag: 'poll-interval-ms', env: 'SWITCHYARD_POLL_INTERVAL_MS', arg: '<ms>', description: 'config poll period (default 60000)' },
  { key: 'longPollS', flag: 'long-poll-s', env: 'SWITCHYARD_LONG_POLL_S', arg: '<s>', description: 'long-poll wait, 0 = plain polling (default 0)' },
  {
    key: 'fallbackAfterMs',
    flag: 'fallback-after-ms',
    env: 'SWITCHYARD_FALLBACK_AFTER_MS',
    arg: '<ms>',
    description: 'MQTT down this long → poll the config (default 30000)',
  },
  { key: 'logLevel', flag: 'log-level', env: 'LOG_LEVEL', arg: '<level>', description: 'fatal|error|warn|info|debug|trace|silent (default info)' },
  {
    key: 'caFile',
    flag: 'ca-file',
    env: 'SWITCHYARD_CA_FILE',
    arg: '<file>',
    description: "PEM CA bundle trusted for mqtts/wss brokers, besides Node's root store (default: that store only)",
  },
];

/** Defaults of the optional numeric options. */
export const AGENT_DEFAULTS = {
  heartbeatMs: 0,
  pollIntervalMs: 60_000,
  longPollS: 0,
  fallbackAfterMs: 30_000,
  logLevel: 'info',
} as const satisfies Partial<AgentConfig>;

/** Usage text for `switchyard-agent --help` (the bin handles `--help` before calling {@link parseAgentConfig}). */
export function agentUsage(): string {
  const rows = AGENT_OPTIONS.map((o) => [`  --${o.flag} ${o.arg}`, `${o.description} [${o.env}]`] as const);
  const width = Math.max(...rows.map(([l]) => l.length)) + 2;
  return ['Usage: switchyard-agent [options]', '', 'Options (flag, or the environment variable in brackets):', ...rows.map(([l, r]) => l.padEnd(width) + r)].join('\n');
}

const MAX_MS = 86_400_000;

/**
 * Parses and validates the agent's options.
 * @param argv arguments after the program name (`process.argv.slice(2)`)
 * @param env the environment (`process.env`); an empty variable counts as unset
 * @throws AgentConfigError listing every problem (unknown flag, missing value, bad value, missing required option)
 */
export function parseAgentConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): AgentConfig {
  const issues: AgentConfigIssue[] = [];
  const options = Object.fromEntries(AGENT_OPTIONS.map((o) => [o.flag, { type: 'string' as const }]));
  let flags: Record<string, string | undefined> = {};
  try {
    flags = parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values as Record<string, string | undefined>;
  } catch (err) {
    issues.push(argvIssue(err, argv));
    throw new AgentConfigError(issues);
  }

  /** The raw value and where it came from, flag first. */
  const raw = (spec: OptionSpec): { value: string; option: string } | undefined => {
    const f = flags[spec.flag];
    if (f !== undefined) return { value: f, option: `--${spec.flag}` };
    const e = env[spec.env];
    if (e !== undefined && e !== '') return { value: e, option: spec.env };
    return undefined;
  };
  const spec = (key: Key): OptionSpec => {
    const s = AGENT_OPTIONS.find((o) => o.key === key);
    if (!s) throw new Error(`no option spec for ${key}`);
    return s;
  };
  const required = (key: Key) => {
    const s = spec(key);
    const r = raw(s);
    if (!r) issues.push({ option: `--${s.flag}`, message: `required (or set ${s.env})` });
    return r;
  };

  // apiUrl
  let apiUrl = '';
  const api = required('apiUrl');
  if (api) {
    const parsed = parseApiUrl(api.value);
    if (typeof parsed === 'string') apiUrl = parsed;
    else issues.push({ option: api.option, message: parsed.error });
  }

  // deviceUuid
  let deviceUuid = '';
  const uuid = required('deviceUuid');
  if (uuid) {
    if (isValidDeviceUuid(uuid.value)) deviceUuid = uuid.value;
    else issues.push({ option: uuid.option, message: `expected 1–128 characters of [A-Za-z0-9:_-], got ${show(uuid.value)}` });
  }

  // deviceToken — never echoed
  let deviceToken = '';
  const token = required('deviceToken');
  if (token) {
    if (token.value.length === 0) issues.push({ option: token.option, message: 'must not be empty' });
    else if (token.value.length > 4096) issues.push({ option: token.option, message: `too long (${token.value.length} characters; at most 4096)` });
    // eslint-disable-next-line no-control-regex
    else if (/[\s\u0000-\u001f\u007f]/.test(token.value)) issues.push({ option: token.option, message: 'must not contain whitespace or control characters' });
    else deviceToken = token.value;
  }

  // stateDir
  let stateDir = deviceUuid ? join('.switchyard', 'agents', deviceUuid) : '';
  const dir = raw(spec('stateDir'));
  if (dir) {
    // eslint-disable-next-line no-control-regex
    if (dir.value.length === 0 || /[\u0000]/.test(dir.value)) issues.push({ option: dir.option, message: `expected a directory path, got ${show(dir.value)}` });
    else stateDir = dir.value;
  }

  const int = (key: 'heartbeatMs' | 'pollIntervalMs' | 'longPollS' | 'fallbackAfterMs', check: (n: number) => string | undefined, unit: string) => {
    const r = raw(spec(key));
    if (!r) return AGENT_DEFAULTS[key];
    if (!/^\d+$/.test(r.value) || !Number.isSafeInteger(Number(r.value))) {
      issues.push({ option: r.option, message: `expected a non-negative integer (${unit}), got ${show(r.value)}` });
      return AGENT_DEFAULTS[key];
    }
    const n = Number(r.value);
    const problem = check(n);
    if (problem) issues.push({ option: r.option, message: `${problem}, got ${n}` });
    return n;
  };
  const heartbeatMs = int('heartbeatMs', (n) => (n !== 0 && (n < 10 || n > MAX_MS) ? 'expected 0 (off) or 10–86400000 ms' : undefined), 'milliseconds');
  const pollIntervalMs = int('pollIntervalMs', (n) => (n < 100 || n > MAX_MS ? 'expected 100–86400000 ms' : undefined), 'milliseconds');
  const longPollS = int('longPollS', (n) => (n > 60 ? 'expected 0–60 s' : undefined), 'seconds');
  const fallbackAfterMs = int('fallbackAfterMs', (n) => (n > MAX_MS ? 'expected 0–86400000 ms' : undefined), 'milliseconds');

  // channels
  let channels: AgentChannel[] = [...AGENT_CHANNELS];
  const ch = raw(spec('channels'));
  if (ch) {
    const parts = ch.value.split(',').map((s) => s.trim());
    const unknown = parts.filter((p) => !(AGENT_CHANNELS as readonly string[]).includes(p));
    if (parts.every((p) => p === '')) {
      issues.push({ option: ch.option, message: `expected at least one of ${AGENT_CHANNELS.join(',')}, got ${show(ch.value)}` });
    } else if (unknown.length > 0) {
      const names = unknown.map((u) => (u === '' ? 'an empty item' : show(u))).join(', ');
      issues.push({ option: ch.option, message: `unknown channel ${names}; expected a comma-separated list of ${AGENT_CHANNELS.join(',')}` });
    } else {
      channels = AGENT_CHANNELS.filter((c) => parts.includes(c));
    }
  }

  // logLevel
  let logLevel: AgentLogLevel = AGENT_DEFAULTS.logLevel;
  const lvl = raw(spec('logLevel'));
  if (lvl) {
    const found = LOG_LEVELS.find((l) => l === lvl.value);
    if (found) logLevel = found;
    else issues.push({ option: lvl.option, message: `expected one of ${LOG_LEVELS.join('|')}, got ${show(lvl.value)}` });
  }

  // caFile: the path's shape only; the file is read and checked at start (it may be mounted later).
  let caFile: string | null = null;
  const ca = raw(spec('caFile'));
  if (ca) {
    // eslint-disable-next-line no-control-regex
    if (ca.value.length === 0 || ca.value.length > 4096 || /[\u0000-\u001f\u007f]/.test(ca.value)) issues.push({ option: ca.option, message: `expected a file path, got ${show(ca.value)}` });
    else caFile = ca.value;
  }

  if (issues.length > 0) throw new AgentConfigError(issues);
  return { apiUrl, deviceUuid, deviceToken, stateDir, heartbeatMs, channels, pollIntervalMs, longPollS, fallbackAfterMs, logLevel, caFile };
}

/** `http(s)://host[:port][/path]` without credentials, query or fragment; returns it without a trailing slash. */
function parseApiUrl(value: string): string | { error: string } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return { error: `expected an http(s) URL such as http://127.0.0.1:3000, got ${show(redactUserinfo(value))}` };
  }
  if (url.username || url.password) return { error: 'must not contain credentials (user:password@); the device token authenticates' };
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return { error: `expected an http or https URL, got ${show(url.protocol.slice(0, -1))}: ${show(value)}` };
  }
  if (url.search || url.hash) return { error: `must not have a query or fragment, got ${show(value)}` };
  return url.toString().replace(/\/+$/, '');
}

/** Turns a parseArgs error into an issue, without repeating any argument value (one may be the token). */
function argvIssue(err: unknown, argv: readonly string[]): AgentConfigIssue {
  const code = (err as { code?: unknown }).code;
  const message = err instanceof Error ? err.message : String(err);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    // Node names only the option (never a `=value`); strip anything after '=' to be sure.
    const m = /Unknown option '([^'=]+)/.exec(message);
    const known = AGENT_OPTIONS.map((o) => `--${o.flag}`).join(' ');
    return { option: m?.[1] ?? 'arguments', message: `unknown option; known options: ${known}` };
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const m = /Option '(--[a-z-]+)/.exec(message);
    const flag = m?.[1] ?? 'arguments';
    const ambiguous = /ambiguous/.test(message);
    return {
      option: flag,
      message: ambiguous
        ? `missing value (the next argument starts with '-'; write ${flag}=VALUE if the value really starts with '-')`
        : 'missing value',
    };
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const index = argv.findIndex((a) => !a.startsWith('-') && message.includes(`'${a}'`));
    return { option: 'arguments', message: `unexpected positional argument${index >= 0 ? ` #${index + 1}` : ''}; every option is a --flag` };
  }
  return { option: 'arguments', message: 'could not parse the command line' };
}

function redactUserinfo(value: string): string {
  return value.replace(/\/\/[^/@]*@/, '//***@');
}

function show(value: string): string {
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
}
