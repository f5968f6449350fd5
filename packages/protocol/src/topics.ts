/**
 * MQTT topic builders and their inverse, {@link parseTopic}.
 *
 * Two namespaces carry the same shadows and jobs:
 * - `iot` → `iot/device/{uuid}/…` (Switchyard's own layout, DESIGN §4);
 * - `aws` → `$aws/things/{uuid}/…` (AWS IoT's layout, so AWS device SDKs work unchanged).
 * Status, command and telemetry topics exist only under `iot`.
 *
 * Every builder throws `TypeError` on input that could not be parsed back; `parseTopic(build(x))` returns `x`.
 */
import { isValidDeviceUuid, isValidShadowName } from './ids.ts';

/** Topic namespace: `iot` (`iot/device/{uuid}`) or `aws` (`$aws/things/{uuid}`). */
export type Namespace = 'iot' | 'aws';

/** Shadow request operations (the topic stub after `shadow/` or `shadow/name/{name}/`). */
export type ShadowOp = 'update' | 'get' | 'delete';

/** Shadow reply stubs; `delta` and `documents` exist only under `update`. */
export type ShadowReply = 'accepted' | 'rejected' | 'delta' | 'documents';

/**
 * Jobs operations, AWS IoT Jobs layout: `notify`, `notify-next` (server → device notifications), `get`,
 * `start-next`, `{jobId}/get` (`job-get`) and `{jobId}/update` (`job-update`) (device requests, each answered
 * on `/accepted` or `/rejected`).
 */
export type JobsOp = 'notify' | 'notify-next' | 'get' | 'start-next' | 'job-get' | 'job-update';

/** Reply stub of a jobs request. */
export type JobsReply = 'accepted' | 'rejected';

/** The only direct command so far. */
export type CommandName = 'broker-change';

/** Result of {@link parseTopic}. Optional keys (`reply`, `jobId`) are absent, never `undefined`. */
export type ParsedTopic =
  | { kind: 'shadow'; ns: Namespace; deviceUuid: string; shadowName: string; op: ShadowOp; reply?: ShadowReply }
  | { kind: 'status'; deviceUuid: string }
  | { kind: 'command'; deviceUuid: string; command: CommandName; ack: boolean }
  | { kind: 'telemetry'; deviceUuid: string; stream: string }
  | { kind: 'jobs'; ns: Namespace; deviceUuid: string; op: JobsOp; jobId?: string; reply?: JobsReply };

/** Valid job id: 1–64 characters of `[A-Za-z0-9_-]` (AWS job-id pattern). */
export const JOB_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

/** The pseudo job id that names "the next pending execution"; valid for `job-get` only. */
export const NEXT_JOB_ID = '$next';

const SHADOW_OPS: readonly ShadowOp[] = ['update', 'get', 'delete'];
const SHADOW_REPLIES: readonly ShadowReply[] = ['accepted', 'rejected', 'delta', 'documents'];
const JOBS_REPLIES: readonly JobsReply[] = ['accepted', 'rejected'];
/** Jobs ops written as one fixed segment after `jobs/`. */
const JOBS_PLAIN_OPS = ['notify', 'notify-next', 'get', 'start-next'] as const;
/** Jobs ops that are requests and so have `/accepted` and `/rejected` replies. */
const JOBS_REQUEST_OPS: readonly JobsOp[] = ['get', 'start-next', 'job-get', 'job-update'];

function includes<T extends string>(list: readonly T[], value: unknown): value is T {
  return typeof value === 'string' && (list as readonly string[]).includes(value);
}

function prefix(uuid: string, ns: Namespace): string {
  if (!isValidDeviceUuid(uuid)) throw new TypeError(`invalid device uuid: ${JSON.stringify(uuid)}`);
  if (ns === 'iot') return `iot/device/${uuid}`;
  if (ns === 'aws') return `$aws/things/${uuid}`;
  throw new TypeError(`invalid namespace: ${JSON.stringify(ns)}`);
}

/**
 * Topic of a shadow request or reply.
 * @param uuid device UUID ({@link isValidDeviceUuid})
 * @param shadowName shadow name, or `''` for the classic shadow
 * @param op `update` | `get` | `delete`
 * @param reply omitted for the request topic; `delta`/`documents` only with `update`
 * @param ns namespace, default `'iot'`
 * @throws TypeError on an invalid uuid, name, op, reply or namespace
 * @example shadowTopic('d1', 'device-state', 'update', 'accepted') // 'iot/device/d1/shadow/name/device-state/update/accepted'
 */
export function shadowTopic(
  uuid: string,
  shadowName: string,
  op: ShadowOp,
  reply?: ShadowReply,
  ns: Namespace = 'iot',
): string {
  const base = prefix(uuid, ns);
  if (shadowName !== '' && !isValidShadowName(shadowName)) {
    throw new TypeError(`invalid shadow name: ${JSON.stringify(shadowName)}`);
  }
  if (!includes(SHADOW_OPS, op)) throw new TypeError(`invalid shadow op: ${JSON.stringify(op)}`);
  if (reply !== undefined) {
    if (!includes(SHADOW_REPLIES, reply)) throw new TypeError(`invalid shadow reply: ${JSON.stringify(reply)}`);
    if ((reply === 'delta' || reply === 'documents') && op !== 'update') {
      throw new TypeError(`shadow reply '${reply}' exists only under 'update', not '${op}'`);
    }
  }
  const named = shadowName === '' ? '' : `/name/${shadowName}`;
  return `${base}/shadow${named}/${op}${reply === undefined ? '' : `/${reply}`}`;
}

/** Presence topic `iot/device/{uuid}/status` (device → server; also the agent's MQTT will). @throws TypeError on an invalid uuid */
export function statusTopic(uuid: string): string {
  return `${prefix(uuid, 'iot')}/status`;
}

/**
 * Direct command topic `iot/device/{uuid}/command/{command}`, or its device → server acknowledgement
 * `…/command/{command}/ack` when `ack` is true (default false).
 * @throws TypeError on an invalid uuid or unknown command
 */
export function commandTopic(uuid: string, command: CommandName, ack = false): string {
  const base = prefix(uuid, 'iot');
  if (command !== 'broker-change') throw new TypeError(`unknown command: ${JSON.stringify(command)}`);
  return `${base}/command/${command}${ack ? '/ack' : ''}`;
}

/**
 * Telemetry topic `iot/device/{uuid}/telemetry/{stream}`; `stream` follows the shadow-name rule (1–64 of `[A-Za-z0-9:_-]`).
 * @throws TypeError on an invalid uuid or stream
 */
export function telemetryTopic(uuid: string, stream: string): string {
  const base = prefix(uuid, 'iot');
  if (!isValidShadowName(stream)) throw new TypeError(`invalid telemetry stream: ${JSON.stringify(stream)}`);
  return `${base}/telemetry/${stream}`;
}

/** Options of {@link jobsTopic}. */
export interface JobsTopicOptions {
  /** Job id; required for `job-get` (may be `$next`) and `job-update`, forbidden otherwise. */
  jobId?: string;
  /** Reply stub; only for request ops (`get`, `start-next`, `job-get`, `job-update`). Omitted = the request. */
  reply?: JobsReply;
  /** Namespace, default `'iot'`. */
  ns?: Namespace;
}

/**
 * Jobs topic in the AWS IoT Jobs layout, e.g. `iot/device/d1/jobs/notify-next`,
 * `iot/device/d1/jobs/j-1/update/accepted`, `$aws/things/d1/jobs/$next/get`.
 * @throws TypeError on an invalid uuid, op, job id, or a reply on a notification op
 */
export function jobsTopic(uuid: string, op: JobsOp, opts: JobsTopicOptions = {}): string {
  const base = `${prefix(uuid, opts.ns ?? 'iot')}/jobs`;
  const { jobId, reply } = opts;
  if (reply !== undefined) {
    if (!includes(JOBS_REPLIES, reply)) throw new TypeError(`invalid jobs reply: ${JSON.stringify(reply)}`);
    if (!JOBS_REQUEST_OPS.includes(op)) throw new TypeError(`jobs op '${op}' has no replies`);
  }
  const tail = reply === undefined ? '' : `/${reply}`;
  if (op === 'job-get' || op === 'job-update') {
    const ok = jobId !== undefined && (JOB_ID_RE.test(jobId) || (op === 'job-get' && jobId === NEXT_JOB_ID));
    if (!ok) throw new TypeError(`invalid job id for ${op}: ${JSON.stringify(jobId)}`);
    return `${base}/${jobId}/${op === 'job-get' ? 'get' : 'update'}${tail}`;
  }
  if (!includes(JOBS_PLAIN_OPS, op)) throw new TypeError(`invalid jobs op: ${JSON.stringify(op)}`);
  if (jobId !== undefined) throw new TypeError(`jobs op '${op}' takes no job id`);
  return `${base}/${op}${tail}`;
}

function parseShadow(ns: Namespace, deviceUuid: string, rest: string[]): ParsedTopic | null {
  let shadowName = '';
  let i = 0;
  if (rest[0] === 'name') {
    const name = rest[1];
    if (!isValidShadowName(name)) return null;
    shadowName = name;
    i = 2;
  }
  const op = rest[i];
  if (!includes(SHADOW_OPS, op)) return null;
  const left = rest.length - i - 1;
  if (left === 0) return { kind: 'shadow', ns, deviceUuid, shadowName, op };
  const reply = rest[i + 1];
  if (left !== 1 || !includes(SHADOW_REPLIES, reply)) return null;
  if ((reply === 'delta' || reply === 'documents') && op !== 'update') return null;
  return { kind: 'shadow', ns, deviceUuid, shadowName, op, reply };
}

function parseJobs(ns: Namespace, deviceUuid: string, rest: string[]): ParsedTopic | null {
  const [a, b, c] = rest;
  if (rest.length === 1) {
    return includes(JOBS_PLAIN_OPS, a) ? { kind: 'jobs', ns, deviceUuid, op: a } : null;
  }
  // Two segments are either `{get|start-next}/{reply}` or `{jobId}/{get|update}`; the second segment's
  // vocabularies do not overlap, so a job id that happens to be "get" still parses unambiguously.
  if (rest.length === 2 && (a === 'get' || a === 'start-next') && includes(JOBS_REPLIES, b)) {
    return { kind: 'jobs', ns, deviceUuid, op: a, reply: b };
  }
  if (rest.length !== 2 && rest.length !== 3) return null;
  if (b !== 'get' && b !== 'update') return null;
  const op: JobsOp = b === 'get' ? 'job-get' : 'job-update';
  if (a === undefined || !(JOB_ID_RE.test(a) || (op === 'job-get' && a === NEXT_JOB_ID))) return null;
  if (rest.length === 2) return { kind: 'jobs', ns, deviceUuid, op, jobId: a };
  return includes(JOBS_REPLIES, c) ? { kind: 'jobs', ns, deviceUuid, op, jobId: a, reply: c } : null;
}

/**
 * Parses any topic built by {@link shadowTopic}, {@link statusTopic}, {@link commandTopic},
 * {@link telemetryTopic} or {@link jobsTopic}. Returns `null` for anything else: empty segments, trailing
 * slashes, wildcards (`+`, `#`), invalid uuids, names or job ids, unknown ops. Never throws.
 */
export function parseTopic(topic: string): ParsedTopic | null {
  if (typeof topic !== 'string') return null;
  const parts = topic.split('/');
  let ns: Namespace;
  if (parts[0] === 'iot' && parts[1] === 'device') ns = 'iot';
  else if (parts[0] === '$aws' && parts[1] === 'things') ns = 'aws';
  else return null;
  const deviceUuid = parts[2];
  if (!isValidDeviceUuid(deviceUuid)) return null;
  const kind = parts[3];
  const rest = parts.slice(4);
  if (kind === 'shadow') return parseShadow(ns, deviceUuid, rest);
  if (kind === 'jobs') return parseJobs(ns, deviceUuid, rest);
  if (ns !== 'iot') return null;
  if (kind === 'status' && rest.length === 0) return { kind: 'status', deviceUuid };
  if (kind === 'command' && rest[0] === 'broker-change') {
    if (rest.length === 1) return { kind: 'command', deviceUuid, command: 'broker-change', ack: false };
    if (rest.length === 2 && rest[1] === 'ack') return { kind: 'command', deviceUuid, command: 'broker-change', ack: true };
    return null;
  }
  if (kind === 'telemetry' && rest.length === 1 && isValidShadowName(rest[0])) {
    return { kind: 'telemetry', deviceUuid, stream: rest[0] };
  }
  return null;
}

/**
 * The MQTT subscription filters a server needs for shadow *requests* (never replies) in namespace `ns`
 * (default `'iot'`): classic and named `update`, `get`, `delete`.
 */
export function SHADOW_REQUEST_SUBSCRIPTIONS(ns: Namespace = 'iot'): string[] {
  const base = ns === 'aws' ? '$aws/things/+/shadow' : 'iot/device/+/shadow';
  return [
    `${base}/update`,
    `${base}/get`,
    `${base}/delete`,
    `${base}/name/+/update`,
    `${base}/name/+/get`,
    `${base}/name/+/delete`,
  ];
}

/**
 * The MQTT subscription filters a server needs for jobs *requests* (never replies or notifications) in namespace
 * `ns` (default `'iot'`): `get`, `start-next`, `{jobId}/get` and `{jobId}/update`.
 */
export function JOBS_REQUEST_SUBSCRIPTIONS(ns: Namespace = 'iot'): string[] {
  const base = ns === 'aws' ? '$aws/things/+/jobs' : 'iot/device/+/jobs';
  return [`${base}/get`, `${base}/start-next`, `${base}/+/get`, `${base}/+/update`];
}

/**
 * True for topics a device publishes and the server consumes: shadow requests (no reply stub), status,
 * command acks, telemetry and jobs requests (`get`, `start-next`, `{jobId}/get`, `{jobId}/update` without a reply).
 */
export function isDeviceToServer(parsed: ParsedTopic): boolean {
  switch (parsed.kind) {
    case 'shadow':
      return parsed.reply === undefined;
    case 'status':
    case 'telemetry':
      return true;
    case 'command':
      return parsed.ack;
    case 'jobs':
      return parsed.reply === undefined && JOBS_REQUEST_OPS.includes(parsed.op);
    default: {
      const never: never = parsed;
      return never;
    }
  }
}
