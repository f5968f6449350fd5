/**
 * Builders for test data: valid request bodies with unique names, overridable field by field.
 * `makeBroker({ port: 1884 })`, `makeDevice({ brokerId })`.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';

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

/**
 * A real, parseable CA certificate for broker records that are never connected to: the API checks `caCert`
 * (it must parse and not be expired), so the one of Node's bundled roots valid the longest serves. Tests that
 * connect over TLS make their own CA (`./pki.ts`).
 */
export const FAKE_CA_PEM: string = [...rootCertificates].sort((a, b) => Date.parse(new X509Certificate(b).validTo) - Date.parse(new X509Certificate(a).validTo))[0]!;
