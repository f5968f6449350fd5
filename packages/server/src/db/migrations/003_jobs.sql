-- Switchyard schema, version 3: device jobs (AWS IoT Jobs execution semantics, one execution per job).

-- One row per job execution on one device. `status` follows packages/protocol/src/jobs.ts (nextJobState);
-- `version_number` is the optimistic lock a device's `expectedVersion` is checked against (+1 on every change);
-- `timeout_at` (in-progress timer, fixed when the execution starts) and `step_timeout_at` (step timer, set by
-- the job's default or the device's `stepTimeoutInMinutes`) are enforced by the server's sweeper → TIMED_OUT.
CREATE TABLE device_jobs (
  job_id                text PRIMARY KEY,
  -- Queue order (oldest first) without relying on equal timestamps.
  seq                   bigserial NOT NULL,
  device_uuid           text NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
  job_type              text NOT NULL,
  job_data              jsonb NOT NULL,
  status                text NOT NULL DEFAULT 'QUEUED'
                        CHECK (status IN ('QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED')),
  status_details        jsonb,
  version_number        integer NOT NULL DEFAULT 1,
  execution_number      integer NOT NULL DEFAULT 1,
  in_progress_timeout_s integer CHECK (in_progress_timeout_s > 0),
  step_timeout_s        integer CHECK (step_timeout_s > 0),
  queued_at             timestamptz NOT NULL DEFAULT now(),
  started_at            timestamptz,
  last_updated_at       timestamptz NOT NULL DEFAULT now(),
  step_timeout_at       timestamptz,
  timeout_at            timestamptz,
  finished_at           timestamptz,
  migration_id          bigint REFERENCES broker_migrations (id) ON DELETE SET NULL,
  created_by            text NOT NULL
);
CREATE INDEX device_jobs_pending_idx ON device_jobs (device_uuid, seq) WHERE status IN ('QUEUED', 'IN_PROGRESS');
CREATE INDEX device_jobs_device_idx ON device_jobs (device_uuid, seq DESC);
CREATE INDEX device_jobs_status_idx ON device_jobs (status, seq DESC);
CREATE INDEX device_jobs_timers_idx ON device_jobs (timeout_at, step_timeout_at) WHERE status = 'IN_PROGRESS';
