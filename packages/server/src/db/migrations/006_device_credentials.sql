-- Switchyard schema, version 6: the device secret at rest, and where each device's credentials are provisioned.

-- AES-256-GCM (secret box, key from SWITCHYARD_SECRET or <dataDir>/secret.key) of the device token: the server
-- needs the token itself to give it to a broker (mosquitto-dynsec `createClient` / `setClientPassword`).
-- NULL for devices registered before version 6: rotate their token to make them provisionable.
ALTER TABLE devices ADD COLUMN token_enc text;

-- One row per (device, broker with a provisioner that holds accounts, i.e. mosquitto-dynsec). Written in the
-- transaction that queues the change (`action`, state `pending`) and updated by the outbox delivery that makes it.
-- Rotation and deletion reach every broker whose last action is `provision`; a completed move deprovisions the
-- others. No secret here: `token_hash` is the sha256 of the token the broker was given (as devices.token_hash).
CREATE TABLE device_broker_credentials (
  device_uuid  text NOT NULL REFERENCES devices (uuid) ON DELETE CASCADE,
  broker_id    integer NOT NULL REFERENCES mqtt_broker_config (id) ON DELETE CASCADE,
  -- What Switchyard last asked for: the device's account exists on this broker, or it does not.
  action       text NOT NULL CHECK (action IN ('provision', 'deprovision')),
  -- pending: queued in the outbox; provisioned / removed: applied; failed: the last attempt failed (it is retried).
  state        text NOT NULL CHECK (state IN ('pending', 'provisioned', 'removed', 'failed')),
  token_hash   text,
  error        text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (device_uuid, broker_id)
);
CREATE INDEX device_broker_credentials_broker_idx ON device_broker_credentials (broker_id, state);

-- Credential rows of the outbox are chained per (device, broker) through depends_on; finding the chain's tail
-- looks rows up by device.
CREATE INDEX outbox_device_idx ON outbox (device_uuid) WHERE device_uuid IS NOT NULL;
