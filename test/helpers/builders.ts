/**
 * Builders for test data: valid request bodies with unique names, overridable field by field.
 * `makeBroker({ port: 1884 })`, `makeDevice({ brokerId })`.
 */
import { randomBytes } from 'node:crypto';

let sequence = 0;

/** A short id unique within the process (and very likely across processes sharing a database). */
export function uniqueSuffix(): string {
  sequence += 1;
  return `${process.pid.toString(36)}-${sequence}-${randomBytes(3).toString('hex')}`;
}

export interface BrokerBody {
  name: string;
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  host: string;
  port: number;
  protocolVersion?: 4 | 5;
  username?: string | null;
  password?: string | null;
  caCert?: string | null;
  provisioner?: 'embedded' | 'mosquitto-dynsec' | 'static';
  status?: 'active' | 'draining' | 'disabled';
}

/** A valid `POST /api/v1/brokers` body with a unique name. */
export function makeBroker(overrides: Partial<BrokerBody> = {}): BrokerBody {
  return { name: `broker-${uniqueSuffix()}`, protocol: 'mqtt', host: '127.0.0.1', port: 1883, ...overrides };
}

export interface DeviceBody {
  uuid?: string;
  name?: string | null;
  brokerId?: number;
}

/** A valid `POST /api/v1/devices` body with a unique uuid. */
export function makeDevice(overrides: Partial<DeviceBody> = {}): DeviceBody {
  return { uuid: `dev-${uniqueSuffix()}`, name: 'test device', ...overrides };
}

/** A syntactically valid PEM certificate block (not a real certificate: the API stores it as text). */
export const FAKE_CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZmFrZQ==\n-----END CERTIFICATE-----\n';
