-- Switchyard schema, version 1: brokers, devices, shadows, audit.
CREATE TABLE mqtt_broker_config (
  id               serial PRIMARY KEY,
  name             text NOT NULL UNIQUE,
  protocol         text NOT NULL CHECK (protocol IN ('mqtt', 'mqtts', 'ws', 'wss')),
  host             text NOT NULL,
  port             integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  protocol_version smallint NOT NULL DEFAULT 4 CHECK (protocol_version IN (4, 5)),
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'draining', 'disabled')),
  ca_cert          text,
  username         text,
  -- AES-256-GCM ciphertext of the server's own password for this broker (never returned by the API).
  password_enc     text,
  provisioner      text NOT NULL DEFAULT 'static' CHECK (provisioner IN ('embedded', 'mosquitto-dynsec', 'static')),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE devices (
  uuid                text PRIMARY KEY,
  name                text,
  mqtt_broker_id      integer REFERENCES mqtt_broker_config (id),
  -- sha256 of the device token (the token itself is shown once, at creation).
  token_hash          text NOT NULL,
  connected_broker_id integer REFERENCES mqtt_broker_config (id) ON DELETE SET NULL,
  online              boolean NOT NULL DEFAULT false,
  last_seen_at        timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  updated_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_mqtt_broker_id_idx ON devices (mqtt_broker_id);
CREATE INDEX devices_token_hash_idx ON devices (token_hash);

-- shadow_name '' is the classic (unnamed) shadow. A deleted shadow keeps its row (deleted = true)
-- so that a shadow created again continues the old version numbering.
CREATE TABLE device_shadows (
  device_uuid text NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
  shadow_name text NOT NULL,
  desired     jsonb,
  reported    jsonb,
  metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
  version     bigint NOT NULL DEFAULT 0,
  deleted     boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_uuid, shadow_name)
);

CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  actor       text NOT NULL,
  action      text NOT NULL,
  target_type text NOT NULL,
  target_id   text,
  outcome     text NOT NULL DEFAULT 'ok',
  details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_target_idx ON audit_log (target_type, target_id);
