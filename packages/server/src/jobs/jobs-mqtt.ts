/**
 * The device side of jobs over MQTT (AWS IoT Jobs layout under `iot/device/{uuid}/jobs/…`, and
 * `$aws/things/{uuid}/jobs/…` when that namespace is served): `get`, `start-next`, `{jobId}/get` (incl.
 * `$next`) and `{jobId}/update`, each answered on `…/accepted` or `…/rejected` through the broker the request
 * came through. Accepted answers carry `timestamp` (epoch seconds) and the echoed `clientToken`; rejections are
 * `{code, message, timestamp, clientToken?, executionState?}` with AWS's string codes.
 *
 * Requests of one device are handled one after another, in arrival order (a device's `IN_PROGRESS` then
 * `SUCCEEDED` must not overtake each other); more than {@link JobsMqttOptions.maxQueuedPerDevice} waiting
 * requests of one device are refused with `RequestThrottled`, and so is a request over the device's rate or
 * in-flight limit ({@link JobsMqttOptions.deviceRateLimit}, counted apart from its shadow requests).
 */
import { isValidDeviceUuid, jobsTopic, parseTopic, type Namespace } from '@switchyard/protocol';
import type { Logger } from '../log.ts';
import { createDeviceLimiter, describeRefusal } from '../shadows/device-limiter.ts';
import {
  JobsError,
  clientTokenOf,
  parseDescribe,
  parseGetPending,
  parseStartNext,
  parseUpdate,
  type JobsErrorCode,
  type JobsService,
} from './jobs.service.ts';

/** Publishes one reply on one broker; failures are the publisher's to log. */
export interface JobsPublisher {
  publish(brokerId: number, topic: string, payload: string, qos: 0 | 1): void;
}

export interface JobsMqttOptions {
  jobs: JobsService;
  publisher: JobsPublisher;
  log: Logger;
  /** Namespaces served. Default ['iot']. */
  namespaces?: Namespace[];
  /** Requests of one device waiting at once before `RequestThrottled`. Default 16. */
  maxQueuedPerDevice?: number;
  /** Jobs requests per second per device (`SWITCHYARD_DEVICE_RATE_LIMIT`; 0 = no limit); over it `RequestThrottled`. Default 20. */
  deviceRateLimit?: number;
  /** Jobs requests of one device admitted and not yet answered (`SWITCHYARD_DEVICE_MAX_IN_FLIGHT`; 0 = no bound). Default 10. */
  deviceMaxInFlight?: number;
  /** Clock for the rate limit, ms. Default `Date.now`. */
  now?: () => number;
}

export interface JobsMqtt {
  /** Entry point for every message the broker pool receives on a jobs request topic. */
  handleMqtt(brokerId: number, topic: string, payload: Buffer): void;
  /** Waits until every request received so far was answered (shutdown, tests). */
  drain(): Promise<void>;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

/** `…/jobs/…/{get|update}` of a valid device whose middle part is no job id: answered InvalidTopic. */
function invalidJobsTopic(topic: string): { ns: Namespace; deviceUuid: string } | null {
  const parts = topic.split('/');
  let ns: Namespace;
  if (parts[0] === 'iot' && parts[1] === 'device') ns = 'iot';
  else if (parts[0] === '$aws' && parts[1] === 'things') ns = 'aws';
  else return null;
  const last = parts[parts.length - 1];
  if (!isValidDeviceUuid(parts[2]) || parts[3] !== 'jobs' || (last !== 'get' && last !== 'update' && last !== 'start-next')) return null;
  return { ns, deviceUuid: parts[2]! };
}

export function createJobsMqtt(opts: JobsMqttOptions): JobsMqtt {
  const { jobs, publisher } = opts;
  const log = opts.log.child({ component: 'jobs-mqtt' });
  const namespaces = opts.namespaces ?? ['iot'];
  const maxQueued = opts.maxQueuedPerDevice ?? 16;
  const lanes = new Map<string, { tail: Promise<void>; waiting: number }>();
  const limits = { ratePerSecond: opts.deviceRateLimit ?? 20, maxInFlight: opts.deviceMaxInFlight ?? 10 };
  const limiter = createDeviceLimiter(limits);
  const now = opts.now ?? Date.now;

  function reject(brokerId: number, topic: string, code: JobsErrorCode, message: string, clientToken: string | undefined, executionState?: unknown): void {
    const body = { code, message, timestamp: jobs.nowSeconds(), ...(clientToken !== undefined ? { clientToken } : {}), ...(executionState !== undefined ? { executionState } : {}) };
    publisher.publish(brokerId, `${topic}/rejected`, JSON.stringify(body), 1);
  }

  function enqueue(deviceUuid: string, work: () => Promise<void>): boolean {
    const lane = lanes.get(deviceUuid) ?? { tail: Promise.resolve(), waiting: 0 };
    if (lane.waiting >= maxQueued) return false;
    lane.waiting++;
    lanes.set(deviceUuid, lane);
    lane.tail = lane.tail.then(work).finally(() => {
      lane.waiting--;
      if (lane.waiting === 0 && lanes.get(deviceUuid) === lane) lanes.delete(deviceUuid);
    });
    return true;
  }

  function handleMqtt(brokerId: number, topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind !== 'jobs' || parsed.reply !== undefined || parsed.op === 'notify' || parsed.op === 'notify-next') {
      const bad = invalidJobsTopic(topic);
      if (bad && namespaces.includes(bad.ns)) {
        reject(brokerId, topic, 'InvalidTopic', `topic ${topic} maps to no jobs operation (job ids are 1–64 of [A-Za-z0-9_-]; $next only with get)`, undefined);
      } else {
        log.debug({ brokerId, topic }, 'ignored message on a topic that is not a jobs request');
      }
      return;
    }
    if (!namespaces.includes(parsed.ns)) return;
    const { deviceUuid, op, ns } = parsed;
    const jobId = parsed.jobId;

    let body: unknown;
    let malformed = false;
    try {
      const text = decoder.decode(payload);
      body = text.trim() === '' ? {} : JSON.parse(text);
    } catch {
      malformed = true;
    }
    const clientToken = malformed ? undefined : clientTokenOf(body);
    const replyTopic = (reply: 'accepted' | 'rejected'): string => jobsTopic(deviceUuid, op, { ns, reply, ...(jobId !== undefined ? { jobId } : {}) });

    // Every request counts against its device's limits, malformed ones too.
    const admission = limiter.tryAcquire(deviceUuid, now());
    if (!admission.ok) {
      const why = describeRefusal(admission.reason, limits);
      log.debug({ brokerId, deviceUuid, reason: admission.reason }, `jobs request refused: ${why}`);
      reject(brokerId, topic, 'RequestThrottled', `${why}; retry later`, clientToken);
      return;
    }
    if (malformed) {
      limiter.release(deviceUuid);
      reject(brokerId, topic, 'InvalidJson', 'the payload is not UTF-8 JSON', undefined);
      return;
    }
    const accepted = enqueue(deviceUuid, async () => {
      try {
        let answer: Record<string, unknown>;
        switch (op) {
          case 'get':
            parseGetPending(body);
            answer = await jobs.getPending(deviceUuid);
            break;
          case 'start-next':
            answer = await jobs.startNext(deviceUuid, parseStartNext(body));
            break;
          case 'job-get':
            answer = await jobs.describe(deviceUuid, jobId!, parseDescribe(body));
            break;
          case 'job-update':
            answer = await jobs.update(deviceUuid, jobId!, parseUpdate(body));
            break;
          default:
            return;
        }
        const out = { ...answer, timestamp: jobs.nowSeconds(), ...(clientToken !== undefined ? { clientToken } : {}) };
        publisher.publish(brokerId, replyTopic('accepted'), JSON.stringify(out), 1);
      } catch (err) {
        if (err instanceof JobsError) {
          reject(brokerId, topic, err.code, err.message, clientToken, err.executionState);
          return;
        }
        log.error({ err, deviceUuid, brokerId, topic }, 'jobs request failed; answered InternalError');
        reject(brokerId, topic, 'InternalError', 'internal error; retry', clientToken);
      } finally {
        limiter.release(deviceUuid);
      }
    });
    if (!accepted) limiter.release(deviceUuid);
    if (!accepted) reject(brokerId, topic, 'RequestThrottled', `too many jobs requests of device ${deviceUuid} waiting; retry later`, clientToken);
  }

  return {
    handleMqtt,
    async drain() {
      while (lanes.size > 0) await Promise.allSettled([...lanes.values()].map((l) => l.tail));
    },
  };
}
