/**
 * The control channel of Mosquitto's dynamic-security plugin, through the server's own connection to a broker
 * (the broker pool): commands go to `$CONTROL/dynamic-security/v1` as `{"commands":[…]}`, answers come back on
 * `$CONTROL/dynamic-security/v1/response` as `{"responses":[…]}` — to every client subscribed there, so each command
 * carries a `correlationData` that is unique to this process and the answer is matched on it.
 *
 * Pacing, per broker (the trap: every successful change makes the plugin rewrite its whole JSON file, and Mosquitto
 * is single-threaded — while it writes, no client of that broker is served; measured on Mosquitto 2.0.11, one
 * change costs ≈ 20–60 ms once the file holds a few hundred devices, and grows with it):
 * - one control message in flight per broker; requests that arrive meanwhile are **batched** into the next message
 *   (up to `maxCommandsPerMessage` commands: one round trip for several devices);
 * - after each message the queue **rests** `restRatio` × the time the message took, so the plugin's work never
 *   takes more than 1 / (1 + restRatio) of the broker's time (½ by default) and the broker keeps serving its
 *   clients while a fleet is provisioned.
 *
 * A command's own error (`"Client already exists"`) is returned to the caller, not thrown; a missing answer
 * (`timeoutMs`) or an unreachable broker rejects every command of the message. Commands hold device passwords: they
 * are never logged, and no error here quotes them.
 */
import { randomBytes } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { DYNSEC_CONTROL_TOPIC, DYNSEC_RESPONSE_TOPIC } from './dynsec-acl.ts';

/** One dynsec command (`{command: 'createClient', username, …}`). */
export type DynsecCommand = { command: string } & Record<string, unknown>;

/** The plugin's answer to one command: `error` set when it failed, `data` for the `get…` commands. */
export interface DynsecResponse {
  command: string;
  error?: string;
  data?: Record<string, unknown>;
}

/** What the control channel needs from the broker pool. */
export interface DynsecTransport {
  publish(brokerId: number, topic: string, payload: string, opts: { qos: 1 }): Promise<void>;
  listen(brokerId: number, topic: string, handler: (payload: Buffer) => void): Promise<void>;
}

export interface DynsecControlOptions {
  transport: DynsecTransport;
  log: Logger;
  clock: Clock;
  /** How long to wait for the plugin's answer to one message, ms. Default 10,000. */
  timeoutMs?: number;
  /** Most commands in one control message (several devices are batched up to it). Default 20. */
  maxCommandsPerMessage?: number;
  /** Rest after each message, as a multiple of the time the message took. Default 1 (the plugin gets ≤ ½ of the broker). */
  restRatio?: number;
}

export interface DynsecControl {
  /** Sends `commands` to the broker's plugin (batched and paced with others) and resolves with one response per command. */
  run(brokerId: number, commands: DynsecCommand[]): Promise<DynsecResponse[]>;
  /** Fails every waiting request; later calls are refused. */
  close(): void;
}

/** The plugin did not answer, or the broker cannot be reached. Transient: the caller retries later. */
export class DynsecUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DynsecUnavailableError';
  }
}

interface Request {
  commands: DynsecCommand[];
  resolve(responses: DynsecResponse[]): void;
  reject(err: Error): void;
}

interface Lane {
  queue: Request[];
  busy: boolean;
  /** Pending messages of this lane by id (their correlationData is `<id>.<index>`). */
  waiting: Map<string, { resolve(responses: DynsecResponse[]): void; reject(err: Error): void }>;
}

export function createDynsecControl(opts: DynsecControlOptions): DynsecControl {
  const log = opts.log.child({ component: 'dynsec' });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const maxCommands = Math.max(1, opts.maxCommandsPerMessage ?? 20);
  const restRatio = Math.max(0, opts.restRatio ?? 1);
  const instance = randomBytes(6).toString('hex');
  const lanes = new Map<number, Lane>();
  let seq = 0;
  let closed = false;

  const sleep = (ms: number): Promise<void> => new Promise((resolve) => opts.clock.setTimeout(resolve, ms));

  function onResponse(lane: Lane, brokerId: number, payload: Buffer): void {
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      log.warn({ brokerId }, 'ignored a dynamic-security response that is not JSON');
      return;
    }
    const responses = (body as { responses?: unknown } | null)?.responses;
    if (!Array.isArray(responses)) return;
    const first = (responses[0] as { correlationData?: unknown } | undefined)?.correlationData;
    if (typeof first !== 'string') return; // another client's request (no correlation data): not ours
    const id = first.slice(0, first.lastIndexOf('.'));
    lane.waiting.get(id)?.resolve(responses as DynsecResponse[]);
  }

  async function send(brokerId: number, lane: Lane, commands: DynsecCommand[]): Promise<DynsecResponse[]> {
    const id = `sy-${instance}-${++seq}`;
    const tagged = commands.map((c, i) => ({ ...c, correlationData: `${id}.${i}` }));
    try {
      await opts.transport.listen(brokerId, DYNSEC_RESPONSE_TOPIC, (payload) => onResponse(lane, brokerId, payload));
    } catch (err) {
      throw new DynsecUnavailableError(
        `cannot read the dynamic-security plugin's answers on broker ${brokerId} (${(err as Error).message}); the server's account there needs subscribePattern and publishClientReceive on ${DYNSEC_RESPONSE_TOPIC}`,
      );
    }
    const answered = new Promise<DynsecResponse[]>((resolve, reject) => {
      const timer = opts.clock.setTimeout(() => {
        lane.waiting.delete(id);
        reject(
          new DynsecUnavailableError(
            `the dynamic-security plugin of broker ${brokerId} did not answer within ${timeoutMs} ms; is the plugin loaded, and may the server's account publish to ${DYNSEC_CONTROL_TOPIC}?`,
          ),
        );
      }, timeoutMs);
      lane.waiting.set(id, {
        resolve(responses) {
          opts.clock.clearTimeout(timer);
          lane.waiting.delete(id);
          resolve(responses);
        },
        reject(err) {
          opts.clock.clearTimeout(timer);
          lane.waiting.delete(id);
          reject(err);
        },
      });
    });
    answered.catch(() => undefined); // awaited below; a timeout while publishing must not count as unhandled
    try {
      await opts.transport.publish(brokerId, DYNSEC_CONTROL_TOPIC, JSON.stringify({ commands: tagged }), { qos: 1 });
    } catch (err) {
      lane.waiting.get(id)?.resolve([]); // settle the waiter (and its timer) before failing
      throw new DynsecUnavailableError(`cannot send dynamic-security commands to broker ${brokerId}: ${(err as Error).message}`);
    }
    const responses = await answered;
    // Answers come back in order; match them by correlation data all the same.
    const byTag = new Map<string, DynsecResponse>();
    for (const r of responses) {
      const tag = (r as { correlationData?: unknown }).correlationData;
      if (typeof tag === 'string') byTag.set(tag, r);
    }
    return tagged.map((c, i) => {
      const r = byTag.get(c.correlationData) ?? responses[i];
      if (!r) throw new DynsecUnavailableError(`the dynamic-security plugin of broker ${brokerId} answered ${responses.length} of ${tagged.length} commands`);
      const { correlationData: _tag, ...rest } = r as DynsecResponse & { correlationData?: string };
      return rest;
    });
  }

  async function drain(brokerId: number, lane: Lane): Promise<void> {
    lane.busy = true;
    try {
      while (lane.queue.length > 0 && !closed) {
        const batch: Request[] = [];
        let count = 0;
        while (lane.queue.length > 0) {
          const next = lane.queue[0]!;
          if (batch.length > 0 && count + next.commands.length > maxCommands) break;
          batch.push(lane.queue.shift()!);
          count += next.commands.length;
        }
        const started = opts.clock.now();
        try {
          const responses = await send(brokerId, lane, batch.flatMap((r) => r.commands));
          let at = 0;
          for (const r of batch) {
            r.resolve(responses.slice(at, at + r.commands.length));
            at += r.commands.length;
          }
        } catch (err) {
          for (const r of batch) r.reject(err as Error);
        }
        const took = opts.clock.now() - started;
        log.debug({ brokerId, commands: count, devices: batch.length, ms: took }, 'dynamic-security commands done');
        if (restRatio > 0 && lane.queue.length > 0) await sleep(Math.ceil(took * restRatio));
      }
    } finally {
      lane.busy = false;
    }
  }

  return {
    run(brokerId, commands) {
      if (closed) return Promise.reject(new DynsecUnavailableError('the dynamic-security control channel is closed (server stopping)'));
      if (commands.length === 0) return Promise.resolve([]);
      let lane = lanes.get(brokerId);
      if (!lane) lanes.set(brokerId, (lane = { queue: [], busy: false, waiting: new Map() }));
      const l = lane;
      return new Promise<DynsecResponse[]>((resolve, reject) => {
        l.queue.push({ commands, resolve, reject });
        if (!l.busy) {
          drain(brokerId, l).catch((err: unknown) => log.error({ err, brokerId }, 'dynamic-security queue failed'));
        }
      });
    },
    close() {
      closed = true;
      const closing = (): DynsecUnavailableError => new DynsecUnavailableError('the dynamic-security control channel is closed (server stopping)');
      for (const lane of lanes.values()) {
        for (const r of lane.queue.splice(0)) r.reject(closing());
        for (const w of [...lane.waiting.values()]) w.reject(closing());
      }
    },
  };
}
