/**
 * Jobs over HTTP. Admin: create a job for a device, list, get, cancel. Device (its own token, or an admin
 * token), AWS IoT Jobs' HTTPS data plane: list pending, describe (`$next` too), start next, update.
 * Device answers keep AWS's shapes (`timestamp` in epoch seconds; `jobDocument` is the document as JSON);
 * refusals are catalogue errors, with `executionState` where AWS gives one.
 */
import type { FastifyPluginAsync } from 'fastify';
import { JOB_STATUSES, NEXT_JOB_ID, type JobStatus } from '@switchyard/protocol';
import { actorOf, principalOf } from '../auth/auth.plugin.ts';
import { AppError, type ErrorCode } from '../errors.ts';
import { errorResponses, pagingQuery } from '../http/schemas.ts';
import { deviceUuidSchema } from '../devices/devices.routes.ts';
import { JobsError, parseDescribe, parseStartNext, parseUpdate, type JobsErrorCode, type JobsService } from './jobs.service.ts';

export interface JobRoutesOptions {
  jobs: JobsService;
}

const HTTP_CODES: Record<JobsErrorCode, ErrorCode> = {
  InvalidTopic: 'NOT_FOUND',
  InvalidJson: 'INVALID_JSON',
  InvalidRequest: 'VALIDATION_FAILED',
  InvalidStateTransition: 'JOB_INVALID_STATE_TRANSITION',
  ResourceNotFound: 'JOB_NOT_FOUND',
  VersionMismatch: 'JOB_VERSION_MISMATCH',
  InternalError: 'INTERNAL',
  RequestThrottled: 'TOO_MANY_REQUESTS',
  TerminalStateReached: 'JOB_TERMINAL_STATE',
};

/** Runs a device operation; a {@link JobsError} becomes its catalogue error (with `executionState`). */
async function device<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof JobsError) {
      throw new AppError(HTTP_CODES[err.code], err.message, { awsCode: err.code, ...(err.executionState ? { executionState: err.executionState } : {}) });
    }
    throw err;
  }
}

const tags = ['jobs'];
const jobIdSchema = { type: 'string', pattern: '^[A-Za-z0-9_-]{1,64}$', description: 'Job id (generated, `job-…`)' } as const;
const jobTypeSchema = { type: 'string', pattern: '^[A-Za-z0-9:._-]{1,64}$', description: '1–64 of [A-Za-z0-9:._-], e.g. `change-broker`' } as const;
const uuidParams = { type: 'object', required: ['uuid'], properties: { uuid: deviceUuidSchema }, additionalProperties: false } as const;
const jobParams = { type: 'object', required: ['jobId'], properties: { jobId: jobIdSchema }, additionalProperties: false } as const;
const deviceJobParams = {
  type: 'object',
  required: ['uuid', 'jobId'],
  properties: { uuid: deviceUuidSchema, jobId: { type: 'string', pattern: '^([A-Za-z0-9_-]{1,64}|\\$next)$', description: 'Job id or `$next`' } },
  additionalProperties: false,
} as const;
/** Timeouts in seconds (AWS counts minutes, 1–10080; seconds here so that short timers can be tested). */
const timeoutSeconds = { type: 'integer', minimum: 1, maximum: 604_800 } as const;
const anyBody = { type: 'object', additionalProperties: true } as const;

export const jobRoutes: FastifyPluginAsync<JobRoutesOptions> = async (app, { jobs }) => {
  // ── admin ──
  app.post<{ Params: { uuid: string }; Body: { jobType: string; jobData: unknown; inProgressTimeoutSeconds?: number; stepTimeoutSeconds?: number } }>(
    '/devices/:uuid/jobs',
    {
      config: { scope: 'operator' },
      schema: {
        tags,
        summary: 'Queue a job for a device (answers the execution, status QUEUED)',
        params: uuidParams,
        body: {
          type: 'object',
          required: ['jobType', 'jobData'],
          properties: {
            jobType: jobTypeSchema,
            jobData: { type: 'object', additionalProperties: true, description: 'The job document (JSON object, ≤ 32 KiB)' },
            inProgressTimeoutSeconds: { ...timeoutSeconds, description: 'IN_PROGRESS longer than this → TIMED_OUT (s)' },
            stepTimeoutSeconds: { ...timeoutSeconds, description: 'Step timer started when the execution enters IN_PROGRESS (s)' },
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403, 404, 413, 415),
      },
    },
    async (req, reply) => {
      const { jobType, jobData, inProgressTimeoutSeconds, stepTimeoutSeconds } = req.body;
      const job = await jobs.create(
        req.params.uuid,
        { jobType, jobData, ...(inProgressTimeoutSeconds !== undefined ? { inProgressTimeoutSeconds } : {}), ...(stepTimeoutSeconds !== undefined ? { stepTimeoutSeconds } : {}) },
        actorOf(principalOf(req)),
      );
      return reply.code(201).header('location', `/api/v1/jobs/${job.jobId}`).send(job);
    },
  );

  app.get<{ Querystring: { limit: number; offset: number; deviceUuid?: string; status?: JobStatus; jobType?: string } }>(
    '/jobs',
    {
      schema: {
        tags,
        summary: 'All jobs, newest first (filter by device, status, type)',
        querystring: {
          type: 'object',
          properties: {
            ...pagingQuery,
            deviceUuid: deviceUuidSchema,
            status: { type: 'string', enum: [...JOB_STATUSES] },
            jobType: jobTypeSchema,
          },
          additionalProperties: false,
        },
        response: errorResponses(400, 403),
      },
    },
    async (req) => {
      const q = req.query;
      return jobs.list({
        limit: q.limit,
        offset: q.offset,
        ...(q.deviceUuid ? { deviceUuid: q.deviceUuid } : {}),
        ...(q.status ? { status: q.status } : {}),
        ...(q.jobType ? { jobType: q.jobType } : {}),
      });
    },
  );

  app.get<{ Params: { jobId: string } }>(
    '/jobs/:jobId',
    { schema: { tags, summary: 'One job (its execution, document and timers)', params: jobParams, response: errorResponses(400, 403, 404) } },
    async (req) => jobs.get(req.params.jobId),
  );

  app.post<{ Params: { jobId: string }; Body: { force?: boolean } | undefined }>(
    '/jobs/:jobId/cancel',
    {
      config: { scope: 'operator' },
      schema: {
        tags,
        summary: 'Cancel a job (QUEUED; IN_PROGRESS only with force)',
        params: jobParams,
        body: { type: 'object', properties: { force: { type: 'boolean', description: 'Needed to cancel an IN_PROGRESS execution' } }, additionalProperties: false },
        response: errorResponses(400, 403, 404, 409, 415),
      },
    },
    async (req) => jobs.cancel(req.params.jobId, { force: req.body?.force === true, actor: actorOf(principalOf(req)) }),
  );

  // ── device (AWS IoT Jobs HTTPS data plane) ──
  const deviceConfig = { device: true };

  app.get<{ Params: { uuid: string } }>(
    '/devices/:uuid/jobs',
    {
      config: deviceConfig,
      schema: { tags, summary: 'The device’s pending executions: {inProgressJobs, queuedJobs}', params: uuidParams, response: errorResponses(400, 403, 404) },
    },
    async (req) => device(async () => ({ ...(await jobs.getPending(req.params.uuid)), timestamp: jobs.nowSeconds() })),
  );

  app.put<{ Params: { uuid: string }; Body: unknown }>(
    `/devices/:uuid/jobs/${NEXT_JOB_ID}`,
    {
      config: deviceConfig,
      schema: {
        tags,
        summary: 'Start the next pending execution ({statusDetails?, stepTimeoutInMinutes?}); no `execution` when none is pending',
        params: uuidParams,
        body: anyBody,
        response: errorResponses(400, 403, 404, 409, 415),
      },
    },
    async (req) => device(async () => ({ ...(await jobs.startNext(req.params.uuid, parseStartNext(req.body))), timestamp: jobs.nowSeconds() })),
  );

  app.get<{ Params: { uuid: string; jobId: string }; Querystring: { includeJobDocument?: boolean; executionNumber?: number } }>(
    '/devices/:uuid/jobs/:jobId',
    {
      config: deviceConfig,
      schema: {
        tags,
        summary: 'Describe one execution, or the next pending one with `$next`',
        params: deviceJobParams,
        querystring: {
          type: 'object',
          properties: { includeJobDocument: { type: 'boolean', default: true }, executionNumber: { type: 'integer', minimum: 1 } },
          additionalProperties: false,
        },
        response: errorResponses(400, 403, 404, 410),
      },
    },
    async (req) =>
      device(async () => ({
        ...(await jobs.describe(req.params.uuid, req.params.jobId, parseDescribe({ ...req.query }))),
        timestamp: jobs.nowSeconds(),
      })),
  );

  app.post<{ Params: { uuid: string; jobId: string }; Body: unknown }>(
    '/devices/:uuid/jobs/:jobId',
    {
      config: deviceConfig,
      schema: {
        tags,
        summary: 'Update one execution ({status, statusDetails?, expectedVersion?, …}, AWS UpdateJobExecution)',
        params: { type: 'object', required: ['uuid', 'jobId'], properties: { uuid: deviceUuidSchema, jobId: jobIdSchema }, additionalProperties: false },
        body: anyBody,
        response: errorResponses(400, 403, 404, 409, 415),
      },
    },
    async (req) => device(async () => ({ ...(await jobs.update(req.params.uuid, req.params.jobId, parseUpdate(req.body))), timestamp: jobs.nowSeconds() })),
  );
};
