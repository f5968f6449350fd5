/**
 * AWS's v2 device SDK (`aws-iot-device-sdk-v2`) for tests, run in child processes (see `./aws-sdk-v2-host.ts` for
 * why: a process that opened an aws-crt streaming operation never exits on its own).
 *
 * - {@link startSdkV2Host}: one child holding any number of SDK connections; each {@link SdkV2Device} forwards
 *   `IotShadowClientv2` / `IotJobsClientv2` calls and streams to it. A refused request rejects with
 *   {@link SdkServiceError} (`modeledError` = the server's `…/rejected` body as the SDK parsed it).
 * - {@link startSdkV2FollowingDevice}: `./aws-sdk-v2-device.ts`, a device program written only with SDK calls that
 *   follows its `desired.mqtt` to another broker.
 *
 * `stop()` of either ends the child (SIGKILL after a grace period) and resolves with its exit code: 0 means it
 * closed every SDK handle and left on its own.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.ts';

export const SHADOW_REQUESTS = ['getShadow', 'getNamedShadow', 'updateShadow', 'updateNamedShadow', 'deleteShadow', 'deleteNamedShadow'] as const;
export const SHADOW_STREAMS = ['createShadowDeltaUpdatedStream', 'createNamedShadowDeltaUpdatedStream', 'createShadowUpdatedStream', 'createNamedShadowUpdatedStream'] as const;
export const JOBS_REQUESTS = ['getPendingJobExecutions', 'startNextPendingJobExecution', 'describeJobExecution', 'updateJobExecution'] as const;
export const JOBS_STREAMS = ['createNextJobExecutionChangedStream', 'createJobExecutionsChangedStream'] as const;

export type ShadowRequestMethod = (typeof SHADOW_REQUESTS)[number];
export type JobsRequestMethod = (typeof JOBS_REQUESTS)[number];
export type StreamMethod = (typeof SHADOW_STREAMS)[number] | (typeof JOBS_STREAMS)[number];

export interface SdkConnectOptions {
  /** `mqtt311` (the only choice for Aedes) or `mqtt5`. */
  protocol: 'mqtt311' | 'mqtt5';
  host: string;
  port: number;
  clientId: string;
  username?: string;
  password?: string;
  /** The request-response clients' operation timeout, seconds. */
  operationTimeoutSeconds: number;
}

/** A request the SDK reported as failed: a `…/rejected` answer (`modeledError`) or no answer (`internalError`). */
export class SdkServiceError extends Error {
  override readonly name = 'SdkServiceError';
  constructor(
    message: string,
    readonly modeledError: any,
    readonly internalError: string | undefined,
  ) {
    super(message);
  }
}

export interface SdkStream {
  /** Events received so far, in order. */
  readonly events: Array<{ kind: 'status' | 'publish' | 'error'; data: any }>;
  /** The first event of `kind` (already received or future) that matches; rejects after `timeoutMs`. */
  next(kind: 'status' | 'publish' | 'error', match?: (data: any) => boolean, timeoutMs?: number): Promise<any>;
  close(): Promise<void>;
}

export interface SdkV2Device {
  shadow(method: ShadowRequestMethod, request: Record<string, unknown>): Promise<any>;
  jobs(method: JobsRequestMethod, request: Record<string, unknown>): Promise<any>;
  /** Creates and opens a streaming operation; resolves once the SDK reported its subscription established. */
  stream(method: StreamMethod, request: Record<string, unknown>): Promise<SdkStream>;
  disconnect(): Promise<void>;
}

export interface SdkV2Host {
  connect(options: SdkConnectOptions): Promise<SdkV2Device>;
  /** Closes every connection, lets the child exit; resolves with its exit code (null if it had to be killed). */
  stop(graceMs?: number): Promise<number | null>;
  /** What the child wrote to stderr (for failure messages). */
  output(): string;
}

const HOST_FILE = fileURLToPath(new URL('./aws-sdk-v2-host.ts', import.meta.url));
const DEVICE_FILE = fileURLToPath(new URL('./aws-sdk-v2-device.ts', import.meta.url));
/** Subscription status `SubscriptionEstablished` of aws-crt's request-response streams. */
const SUBSCRIPTION_ESTABLISHED = 0;

const live = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }
  live.add(child);
  child.once('exit', () => live.delete(child));
}

function exitOf(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>, graceMs: number, ask: () => void): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  ask();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

export async function startSdkV2Host(): Promise<SdkV2Host> {
  const child = spawn(process.execPath, ['--import', 'tsx', HOST_FILE], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'advanced' });
  track(child);
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = exitOf(child);
  const pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  const streams = new Map<number, SdkStream['events']>();
  const streamWaiters = new Set<() => void>();
  let seq = 0;
  let ready!: () => void;
  const isReady = new Promise<void>((resolve) => (ready = resolve));

  child.on('message', (msg: any) => {
    if (msg.event === 'ready') return ready();
    if (msg.event === 'stream') {
      streams.get(msg.stream)?.push({ kind: msg.kind, data: msg.data });
      for (const wake of [...streamWaiters]) wake();
      return;
    }
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) p.resolve(msg.value);
    else p.reject(new SdkServiceError(msg.error.message, msg.error.modeledError, msg.error.internalError));
  });
  void exited.then((code) => {
    for (const p of pending.values()) p.reject(new Error(`the SDK host exited (${code}) before answering:\n${stderr.slice(-3000)}`));
    pending.clear();
  });

  function call(msg: Record<string, unknown>): Promise<any> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`the SDK host has exited:\n${stderr.slice(-3000)}`));
    const id = ++seq;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      child.send({ ...msg, id });
    });
  }

  const startTimer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  await Promise.race([isReady, exited.then((code) => Promise.reject(new Error(`the SDK host exited (${code}) while starting:\n${stderr}`)))]);
  clearTimeout(startTimer);

  let devices = 0;
  return {
    async connect(options) {
      const device = `d${++devices}`;
      await call({ op: 'connect', device, options });
      return {
        shadow: (method, request) => call({ op: 'request', device, service: 'shadow', method, request }),
        jobs: (method, request) => call({ op: 'request', device, service: 'jobs', method, request }),
        async stream(method, request) {
          const id = ++seq;
          const events: SdkStream['events'] = [];
          streams.set(id, events);
          const service = (SHADOW_STREAMS as readonly string[]).includes(method) ? 'shadow' : 'jobs';
          const next: SdkStream['next'] = async (kind, match = () => true, timeoutMs = 5000) => {
            const found = (): any => events.find((e) => e.kind === kind && match(e.data));
            const hit = found();
            if (hit) return hit.data;
            return new Promise((resolve, reject) => {
              const wake = (): void => {
                const e = found();
                if (!e) return;
                clearTimeout(timer);
                streamWaiters.delete(wake);
                resolve(e.data);
              };
              const timer = setTimeout(() => {
                streamWaiters.delete(wake);
                reject(new Error(`timed out after ${timeoutMs} ms waiting for a '${kind}' event of ${method}; got ${JSON.stringify(events)}`));
              }, timeoutMs);
              streamWaiters.add(wake);
            });
          };
          await call({ op: 'stream', device, service, method, request, stream: id });
          const status = await next('status');
          if (status.type !== SUBSCRIPTION_ESTABLISHED) throw new Error(`${method}: subscription not established: ${JSON.stringify(status)}`);
          return { events, next, close: () => call({ op: 'closeStream', device, stream: id }) };
        },
        disconnect: () => call({ op: 'disconnect', device }),
      };
    },
    stop: (graceMs = 5000) =>
      stopChild(child, exited, graceMs, () => {
        call({ op: 'exit' }).catch(() => child.kill('SIGTERM'));
      }),
    output: () => stderr,
  };
}

export interface FollowingDeviceOptions {
  thingName: string;
  /** The broker it starts on (its id, as the server knows it, and address). */
  brokerId: number;
  host: string;
  port: number;
  username?: string;
  password?: string;
}

export interface FollowingDevice {
  /** JSON lines the device printed (`{event: 'connected'|'moved'|'error', …}`), parsed. */
  events(): Array<Record<string, any>>;
  /** Resolves with the first event that matches, failing with the device's output after `timeoutMs`. */
  waitForEvent(match: (e: Record<string, any>) => boolean, timeoutMs?: number): Promise<Record<string, any>>;
  /** SIGTERM: the device closes its SDK handles and exits; resolves with the exit code (null if killed). */
  stop(graceMs?: number): Promise<number | null>;
  output(): string;
}

/** Runs `./aws-sdk-v2-device.ts` as a process of its own, configured through its environment. */
export function startSdkV2FollowingDevice(o: FollowingDeviceOptions): FollowingDevice {
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    THING_NAME: o.thingName,
    BROKER_ID: String(o.brokerId),
    BROKER_HOST: o.host,
    BROKER_PORT: String(o.port),
    ...(o.username !== undefined ? { MQTT_USERNAME: o.username } : {}),
    ...(o.password !== undefined ? { MQTT_PASSWORD: o.password } : {}),
  };
  const child = spawn(process.execPath, ['--import', 'tsx', DEVICE_FILE], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = exitOf(child);
  const events = (): Array<Record<string, any>> =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .flatMap((l) => {
        try {
          return [JSON.parse(l) as Record<string, any>];
        } catch {
          return [];
        }
      });
  return {
    events,
    output: () => out,
    async waitForEvent(match, timeoutMs = 20_000) {
      return waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`the device exited with ${child.exitCode}`);
          return events().find(match);
        },
        { timeoutMs, intervalMs: 50, message: 'a device event' },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- device output ---\n${out.slice(-4000)}`);
      });
    },
    stop: (graceMs = 5000) => stopChild(child, exited, graceMs, () => child.kill('SIGTERM')),
  };
}
