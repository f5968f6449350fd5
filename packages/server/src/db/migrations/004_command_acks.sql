-- Switchyard schema, version 4: the MQTT command channel of broker assignments.
-- `command_id` is the id of the `broker-change` command an assignment sent (channel `command`), `acks` the
-- device's acknowledgements of it, oldest first: `{status: received|completed|failed, error?, brokerId, at}`.
-- The list is bounded by the code that appends to it (the newest 20 are kept).
ALTER TABLE broker_migrations
  ADD COLUMN command_id text,
  ADD COLUMN acks jsonb NOT NULL DEFAULT '[]'::jsonb;
CREATE INDEX broker_migrations_command_idx ON broker_migrations (device_uuid, command_id) WHERE command_id IS NOT NULL;
