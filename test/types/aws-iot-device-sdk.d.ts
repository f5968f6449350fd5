/**
 * The part of `aws-iot-device-sdk` (AWS's v1 device SDK, plain JavaScript without type declarations) that the tests
 * use: `thingShadow` and `jobs`, both over mutual TLS. Written from the package's own source (thing/index.js,
 * jobs/index.js, device/index.js of 2.2.16).
 */
declare module 'aws-iot-device-sdk' {
  import type { EventEmitter } from 'node:events';

  export interface DeviceOptions {
    host: string;
    port?: number;
    /** Paths (or `privateKey`/`clientCert`/`caCert` buffers): a key, a certificate and a CA are all required. */
    keyPath?: string;
    certPath?: string;
    caPath?: string;
    privateKey?: Buffer;
    clientCert?: Buffer;
    caCert?: Buffer;
    clientId?: string;
    protocol?: 'mqtts' | 'wss' | 'wss-custom-auth';
    /** Default true: the SDK then sends `?SDK=JavaScript&Version=…` as (or appended to) the username. */
    enableMetrics?: boolean;
    baseReconnectTimeMs?: number;
    maximumReconnectTimeMs?: number;
    keepalive?: number;
    debug?: boolean;
  }

  export interface RegisterOptions {
    /** Default true: stay subscribed to accepted/rejected (then also sees others' updates). */
    persistentSubscribe?: boolean;
    ignoreDeltas?: boolean;
    discardStale?: boolean;
    enableVersioning?: boolean;
    qos?: 0 | 1;
  }

  export interface ThingShadow extends EventEmitter {
    register(thingName: string, options: RegisterOptions, callback: (err?: Error, failedTopics?: unknown) => void): void;
    unregister(thingName: string): void;
    /** Returns the clientToken of the operation, or null when one is already running for this thing. */
    update(thingName: string, stateObject: { state: Record<string, unknown> }): string | null;
    get(thingName: string, clientToken?: string): string | null;
    delete(thingName: string, clientToken?: string): string | null;
    end(force?: boolean, callback?: () => void): void;
  }

  export interface Job {
    id: string;
    document: any;
    operation: string | undefined;
    status: { status: string; statusDetails?: Record<string, string> };
    inProgress(statusDetails?: Record<string, string>, callback?: (err?: Error) => void): void;
    succeeded(statusDetails?: Record<string, string>, callback?: (err?: Error) => void): void;
    failed(statusDetails?: Record<string, string>, callback?: (err?: Error) => void): void;
  }

  export interface Jobs extends EventEmitter {
    subscribeToJobs(thingName: string, operationName: string | null, callback: (err: Error | null, job: Job | null) => void): void;
    startJobNotifications(thingName: string, callback?: (err?: Error) => void): void;
    end(force?: boolean, callback?: () => void): void;
  }

  export function thingShadow(options: DeviceOptions, thingShadowOptions?: { operationTimeout?: number }): ThingShadow;
  export function jobs(options: DeviceOptions): Jobs;
  const awsIot: { thingShadow: typeof thingShadow; jobs: typeof jobs };
  export default awsIot;
}
