/**
 * The job engine: the device side of AWS IoT Jobs' "next job" workflow (reference §2.7) under
 * `iot/device/{uuid}/jobs/…`, with a registry of handlers by job type.
 *
 * On every connect (first, reconnect, and after a broker move) the agent subscribes to {@link JobEngine.topics}
 * (`notify-next` and the replies of `$next/get` and `{jobId}/update`) and calls {@link JobEngine.connected},
 * which asks `$next/get`: a job queued while the device was offline is found then. `notify-next` with an
 * `execution` wakes the engine too.
 *
 * States (one field, `#phase`): `idle` (no job; a `$next` answer or a `notify-next` with an execution starts
 * one) → `running {jobId}` (IN_PROGRESS sent and accepted, the handler runs) → back to `idle` after the final
 * update (SUCCEEDED / FAILED / REJECTED), and `$next/get` again. Jobs run one at a time; a notification that
 * arrives meanwhile is picked up by that `$next/get`. An execution already IN_PROGRESS (the agent restarted
 * mid-job) is run again: handlers are idempotent.
 *
 * An unknown job type is answered REJECTED with the reason in `statusDetails` (not retryable, reference §2.7);
 * a handler that throws gives FAILED with the error. An IN_PROGRESS update that is refused (the job was canceled
 * or timed out meanwhile) drops the job without running it. Requests go through the agent's publish queue
 * (QoS 1, across reconnects and moves); a reply that does not come within `requestTimeoutMs` is asked again.
 */
import type { Logger } from 'pino';
import { jobsTopic, NEXT_JOB_ID } from '@switchyard/protocol';
import type { Clock, TimerHandle } from '../clock.ts';

/** Final statuses a handler may give. */
export type JobOutcomeStatus = 'SUCCEEDED' | 'FAILED' | 'REJECTED';

/** What a handler resolves with. */
export interface JobOutcome {
  status: JobOutcomeStatus;
  /** Reported with the final update (≤ 10 pairs of non-empty strings). */
  statusDetails?: Record<string, string>;
}

/** What a handler gets. */
export interface JobContext {
  jobId: string;
  jobType: string;
  /** The job document (`execution.jobDocument`). */
  document: Record<string, unknown>;
  /** Aborted when the agent stops: give up without a final status (the job stays IN_PROGRESS and runs again on the next start). */
  signal: AbortSignal;
  /** Reports progress: an IN_PROGRESS update with these `statusDetails`. Never rejects. */
  progress(statusDetails: Record<string, string>): Promise<void>;
}

/** Runs one job; resolves with its outcome. A rejection counts as FAILED with the error's message. */
export type JobHandler = (ctx: JobContext) => Promise<JobOutcome>;

/** Options of {@link JobEngine}. */
export interface JobEngineOptions {
  deviceUuid: string;
  /** Publishes a request (the agent's publish queue, QoS 1). */
  publish(topic: string, payload: string): Promise<void>;
  /** Handlers by job type. More can be added with {@link JobEngine.register}. */
  handlers?: Record<string, JobHandler>;
  clock: Clock;
  log: Logger;
  /** How long a request waits for its answer before it is sent again, ms. Default 10000. */
  requestTimeoutMs?: number;
}

/** The fields of an AWS JobExecution the engine reads. */
interface Execution {
  jobId: string;
  /** Switchyard's server names the type in the execution; other servers leave it to the document. */
  jobType?: string;
  status: string;
  jobDocument?: unknown;
}

type Reply = { ok: true; body: Record<string, any> } | { ok: false; body: Record<string, any> };

/** See the module comment. */
export class JobEngine {
  readonly #o: JobEngineOptions;
  readonly #log: Logger;
  readonly #handlers = new Map<string, JobHandler>();
  readonly #pending = new Map<string, { resolve: (r: Reply) => void; timer: TimerHandle }>();
  #phase: { name: 'idle' } | { name: 'running'; jobId: string } = { name: 'idle' };
  #tokenSeq = 0;
  #stopped = false;
  readonly #abort = new AbortController();
  #askAgain = false;
  #asking = false;

  constructor(options: JobEngineOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'job-engine' });
    for (const [type, h] of Object.entries(options.handlers ?? {})) this.#handlers.set(type, h);
  }

  /** Adds (or replaces) the handler of a job type. */
  register(jobType: string, handler: JobHandler): void {
    this.#handlers.set(jobType, handler);
  }

  /** The job currently running, if any. */
  get runningJobId(): string | null {
    return this.#phase.name === 'running' ? this.#phase.jobId : null;
  }

  /** Filters to subscribe to on every connection. */
  topics(): string[] {
    const base = `iot/device/${this.#o.deviceUuid}/jobs`;
    return [`${base}/notify-next`, `${base}/+/get/+`, `${base}/+/update/+`];
  }

  /** After (re)connecting and subscribing: ask for the next job. */
  connected(): void {
    this.#askNext('connected');
  }

  /** Feeds a message received on any connection; returns true when it was a jobs message of this device. */
  handleMessage(topic: string, payload: Buffer): boolean {
    const base = `iot/device/${this.#o.deviceUuid}/jobs/`;
    if (!topic.startsWith(base)) return false;
    let body: Record<string, any>;
    try {
      body = JSON.parse(payload.toString('utf8')) as Record<string, any>;
      if (typeof body !== 'object' || body === null) return true;
    } catch {
      this.#log.warn({ topic }, 'ignored a jobs message that is not JSON');
      return true;
    }
    const rest = topic.slice(base.length);
    if (rest === 'notify-next') {
      if (body.execution) this.#askNext('notify-next');
      return true;
    }
    const reply = rest.endsWith('/accepted') ? true : rest.endsWith('/rejected') ? false : null;
    if (reply === null) return true;
    const token = typeof body.clientToken === 'string' ? body.clientToken : undefined;
    const waiter = token !== undefined ? this.#pending.get(token) : undefined;
    if (waiter) {
      this.#pending.delete(token!);
      this.#o.clock.clearTimeout(waiter.timer);
      waiter.resolve({ ok: reply, body });
    }
    return true;
  }

  /** Stops: a running handler is aborted (its job stays IN_PROGRESS), pending requests are dropped. */
  stop(): void {
    this.#stopped = true;
    this.#abort.abort();
    for (const [token, w] of this.#pending) {
      this.#o.clock.clearTimeout(w.timer);
      w.resolve({ ok: false, body: { code: 'Stopped', message: 'agent stopping' } });
      this.#pending.delete(token);
    }
  }

  /** One request and its answer; asked again after `requestTimeoutMs` without one (bounded by `stop`). */
  async #request(topic: string, body: Record<string, unknown>): Promise<Reply> {
    for (let attempt = 0; !this.#stopped; attempt++) {
      const clientToken = `j${++this.#tokenSeq}-${this.#o.clock.now().toString(36)}`;
      const answer = new Promise<Reply | null>((resolve) => {
        const timer = this.#o.clock.setTimeout(() => {
          this.#pending.delete(clientToken);
          resolve(null);
        }, this.#o.requestTimeoutMs ?? 10_000);
        this.#pending.set(clientToken, { resolve, timer });
      });
      this.#o.publish(topic, JSON.stringify({ ...body, clientToken })).catch((err: unknown) => {
        this.#log.debug({ err: (err as Error).message, topic, attempt }, 'jobs request not sent yet; the timeout asks again');
      });
      const r = await answer;
      if (r) return r;
      this.#log.warn({ topic, attempt }, 'no answer to a jobs request; asking again');
    }
    return { ok: false, body: { code: 'Stopped', message: 'agent stopping' } };
  }

  #askNext(reason: string): void {
    if (this.#stopped) return;
    if (this.#phase.name === 'running' || this.#asking) {
      this.#askAgain = true;
      return;
    }
    this.#asking = true;
    void this.#request(jobsTopic(this.#o.deviceUuid, 'job-get', { jobId: NEXT_JOB_ID }), { includeJobDocument: true })
      .then((r) => {
        this.#asking = false;
        if (this.#stopped) return;
        if (!r.ok) {
          this.#log.warn({ code: r.body.code, message: r.body.message, reason }, '$next/get rejected');
          return;
        }
        const exec = r.body.execution as Execution | undefined;
        if (exec && (exec.status === 'QUEUED' || exec.status === 'IN_PROGRESS') && this.#phase.name === 'idle') {
          void this.#run(exec);
          return;
        }
        if (this.#askAgain) {
          this.#askAgain = false;
          this.#askNext('coalesced');
        }
      })
      .catch((err: unknown) => {
        this.#asking = false;
        this.#log.error({ err }, 'asking for the next job failed; the next connect or notification asks again');
      });
  }

  async #run(exec: Execution): Promise<void> {
    const { jobId } = exec;
    this.#phase = { name: 'running', jobId };
    const document = typeof exec.jobDocument === 'object' && exec.jobDocument !== null && !Array.isArray(exec.jobDocument) ? (exec.jobDocument as Record<string, unknown>) : {};
    const jobType = typeof exec.jobType === 'string' ? exec.jobType : typeFromDocument(document);
    const log = this.#log.child({ jobId, jobType });
    const updateTopic = jobsTopic(this.#o.deviceUuid, 'job-update', { jobId });
    try {
      const handler = jobType !== undefined ? this.#handlers.get(jobType) : undefined;
      if (!handler) {
        const reason = jobType === undefined ? 'the job document names no job type' : `unknown job type ${jobType}`;
        log.warn({ reason }, 'rejecting a job this agent cannot run');
        await this.#finish(updateTopic, { status: 'REJECTED', statusDetails: { reason: reason.slice(0, 1024) } }, log);
        return;
      }
      const started = await this.#request(updateTopic, { status: 'IN_PROGRESS' });
      if (!started.ok) {
        log.warn({ code: started.body.code, message: started.body.message }, 'the job cannot start (canceled or timed out meanwhile); dropped');
        return;
      }
      log.info('job started');
      let outcome: JobOutcome;
      try {
        outcome = await handler({
          jobId,
          jobType: jobType!,
          document,
          signal: this.#abort.signal,
          progress: async (statusDetails) => {
            const r = await this.#request(updateTopic, { status: 'IN_PROGRESS', statusDetails: clean(statusDetails) });
            if (!r.ok) log.debug({ code: r.body.code }, 'progress update refused');
          },
        });
      } catch (err) {
        if (this.#stopped) return;
        outcome = { status: 'FAILED', statusDetails: { reason: String((err as Error)?.message ?? err).slice(0, 1024) || 'the handler failed' } };
      }
      if (this.#stopped) return;
      await this.#finish(updateTopic, outcome, log);
    } finally {
      this.#phase = { name: 'idle' };
      this.#askAgain = false;
      this.#askNext('job done');
    }
  }

  async #finish(topic: string, outcome: JobOutcome, log: Logger): Promise<void> {
    const r = await this.#request(topic, { status: outcome.status, ...(outcome.statusDetails ? { statusDetails: clean(outcome.statusDetails) } : {}) });
    if (r.ok) log.info({ status: outcome.status, statusDetails: outcome.statusDetails }, `job ${outcome.status}`);
    else log.warn({ status: outcome.status, code: r.body.code, message: r.body.message }, 'the final job update was refused');
  }
}

/** The type of a job from a server that does not name it in the execution: `jobType`, `type`, `operation` or `command` of the document. */
function typeFromDocument(doc: Record<string, unknown>): string | undefined {
  for (const key of ['jobType', 'type', 'operation', 'command']) if (typeof doc[key] === 'string') return doc[key] as string;
  return undefined;
}

/** statusDetails the server accepts: ≤ 10 pairs, keys of [a-zA-Z0-9:_-], values 1–1024 characters without control characters. */
function clean(details: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(details).slice(0, 10)) {
    const key = k.replace(/[^a-zA-Z0-9:_-]/g, '_').slice(0, 128) || 'detail';
    // eslint-disable-next-line no-control-regex
    const value = String(v).replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, 1024);
    out[key] = value === '' ? '-' : value;
  }
  return out;
}
