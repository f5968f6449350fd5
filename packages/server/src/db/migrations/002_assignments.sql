-- Switchyard schema, version 2: broker assignments (migrations) and the transactional outbox.

-- One row per assignment of a device to a broker. Moved only by what the device reports
-- (and by the outbox when the notification went out, and the sweeper when it times out).
CREATE TABLE broker_migrations (
  id              bigserial PRIMARY KEY,
  device_uuid     text NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
  from_broker_id  integer REFERENCES mqtt_broker_config (id) ON DELETE SET NULL,
  to_broker_id    integer NOT NULL REFERENCES mqtt_broker_config (id),
  channel         text NOT NULL DEFAULT 'shadow' CHECK (channel IN ('shadow', 'command', 'job', 'poll')),
  status          text NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'notified', 'migrating', 'completed', 'failed', 'superseded', 'canceled', 'timed_out')),
  shadow_version  bigint NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  error           text,
  requested_by    text NOT NULL,
  deadline_at     timestamptz NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  notified_at     timestamptz,
  migrating_at    timestamptz,
  completed_at    timestamptz,
  finished_at     timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX broker_migrations_device_idx ON broker_migrations (device_uuid, id DESC);
CREATE INDEX broker_migrations_open_idx ON broker_migrations (deadline_at)
  WHERE status IN ('pending', 'notified', 'migrating');
CREATE INDEX broker_migrations_status_idx ON broker_migrations (status, id DESC);

-- Side effects written in the same transaction as the state change that needs them, delivered after
-- commit, at least once. A row is leased (claimed_until) while it is delivered and deleted once delivered;
-- a row whose lease ran out (its server died) is delivered again. `depends_on` keeps a device's steps in
-- order (provision the target broker before telling the device).
CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  kind          text NOT NULL,
  payload       jsonb NOT NULL,
  device_uuid   text,
  migration_id  bigint,
  depends_on    bigint,
  attempts      integer NOT NULL DEFAULT 0,
  available_at  timestamptz NOT NULL DEFAULT now(),
  claimed_until timestamptz,
  last_error    text,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_available_idx ON outbox (available_at, id);
