/**
 * Device credentials on brokers: one provisioner per broker record (`mqtt_broker_config.provisioner`).
 *
 * - `embedded` (the in-process Aedes brokers): they check every CONNECT against the device registry themselves,
 *   so nothing is provisioned; when a token is rotated or a device deleted, the live sessions of that device on the
 *   in-process brokers are dropped (`kickLocal`, and on the other instances through their NOTIFY listener).
 * - `mosquitto-dynsec`: the server, with its own account on the broker, creates / updates / removes the device's
 *   client and role over `$CONTROL/dynamic-security/v1` (`dynsec-provisioner.ts`) — as outbox rows
 *   (`broker.provision`, `broker.deprovision`) written in the transaction that decides the change, delivered after
 *   commit, at least once, in order per (device, broker), each recorded in `device_broker_credentials`.
 * - `static`: the operator manages the broker's accounts; Switchyard only connects.
 *
 * The `for…` functions run inside the caller's transaction, after the device row is locked; they return the ids of
 * the outbox rows they wrote (callers make notifications depend on them, or wait for them with
 * {@link ProvisioningService.waitApplied}). The token itself never goes into the outbox: a delivery reads
 * `devices.token_enc` and decrypts it just before it talks to the broker.
 */
import type { Db, Queryable } from '../db/db.ts';
import type { Logger } from '../log.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { AppError } from '../errors.ts';
import { getBroker, type BrokerRow } from '../brokers/brokers.store.ts';
import { credentialChainTail, enqueue, type BrokerDeprovisionPayload, type BrokerProvisionPayload, type OutboxRow } from '../outbox/outbox.store.ts';
import {
  getCredential,
  getDeviceSecret,
  listCredentials,
  lockDeviceForCredentials,
  queueCredential,
  recordCredential,
  type CredentialRow,
} from './credentials.store.ts';
import { ProvisioningRefusedError, type DynsecProvisioner } from './dynsec-provisioner.ts';

/** NOTIFY channel: a device's token changed or the device was deleted (payload: its uuid). Written in that transaction. */
export const DEVICE_CREDENTIALS_CHANNEL = 'switchyard_device_credentials';

/** Where a device's credentials stand on one broker (for answers and logs: never a secret). */
export interface CredentialView {
  brokerId: number;
  action: 'provision' | 'deprovision';
  state: 'pending' | 'provisioned' | 'removed' | 'failed';
  error: string | null;
  updatedAt: string;
}

export interface ProvisioningOptions {
  db: Db;
  log: Logger;
  secretBox: SecretBox;
  /** The dynsec provisioner (over the broker pool). */
  dynsec: DynsecProvisioner;
  /** Drops the device's live sessions on this process's embedded brokers (none: a no-op). */
  kickLocal?(deviceUuid: string): void;
  /** Waits for outbox rows to be delivered (the dispatcher's `waitDelivered`); bound late, the dispatcher starts after. */
  waitDelivered?(ids: readonly number[], timeoutMs: number): Promise<number[]>;
}

export function toCredentialView(row: CredentialRow): CredentialView {
  return {
    brokerId: row.broker_id,
    action: row.action,
    state: row.state,
    error: row.error,
    updatedAt: row.updated_at.toISOString(),
  };
}

export function createProvisioningService(opts: ProvisioningOptions) {
  const { db, secretBox, dynsec } = opts;
  const log = opts.log.child({ component: 'provisioning' });
  let waitDelivered = opts.waitDelivered;

  /** Queues one credential change of the pair, after the pair's pending ones. */
  async function queue(
    q: Queryable,
    deviceUuid: string,
    change: { kind: 'broker.provision'; payload: BrokerProvisionPayload } | { kind: 'broker.deprovision'; payload: BrokerDeprovisionPayload },
  ): Promise<number> {
    const brokerId = change.payload.brokerId;
    const tail = await credentialChainTail(q, deviceUuid, brokerId);
    await queueCredential(q, deviceUuid, brokerId, change.kind === 'broker.provision' ? 'provision' : 'deprovision');
    const [id] = await enqueue(q, [{ ...change, deviceUuid, ...(tail !== null ? { dependsOn: tail } : {}) }]);
    return id!;
  }

  /** A broker of this kind keeps per-device accounts that Switchyard manages. */
  const holdsAccounts = (broker: Pick<BrokerRow, 'provisioner'>): boolean => broker.provisioner === 'mosquitto-dynsec';

  async function requireSecret(q: Queryable, deviceUuid: string, broker: BrokerRow): Promise<void> {
    const secret = await getDeviceSecret(q, deviceUuid);
    if (secret !== null && secret.token_enc === null) {
      throw new AppError(
        'DEVICE_SECRET_UNAVAILABLE',
        `device ${deviceUuid} was registered before device secrets were kept, so it cannot be given an account on broker ${broker.name} (provisioner mosquitto-dynsec); rotate its token (POST /api/v1/devices/${deviceUuid}/token) and assign it again`,
      );
    }
  }

  const service = {
    holdsAccounts,

    /** Registration on `broker` (in the registering transaction). */
    async forRegistration(q: Queryable, deviceUuid: string, broker: BrokerRow | null): Promise<number[]> {
      if (broker === null || !holdsAccounts(broker)) return [];
      return [await queue(q, deviceUuid, { kind: 'broker.provision', payload: { brokerId: broker.id, reason: 'create' } })];
    },

    /**
     * Assignment to `broker` (in the assignment's transaction, device locked): the device's account there, before
     * any notification — which must depend on the returned row. Null when the broker needs nothing.
     * @throws AppError DEVICE_SECRET_UNAVAILABLE when the device has no stored secret to give the broker
     */
    async forAssignment(q: Queryable, deviceUuid: string, broker: BrokerRow, migrationId: number): Promise<number | null> {
      if (!holdsAccounts(broker)) return null;
      await requireSecret(q, deviceUuid, broker);
      return queue(q, deviceUuid, { kind: 'broker.provision', payload: { brokerId: broker.id, reason: 'assign', migrationId } });
    },

    /** Token rotation (in its transaction, device locked): the new password on every broker that has an account of it. */
    async forRotation(q: Queryable, deviceUuid: string): Promise<number[]> {
      const ids: number[] = [];
      for (const c of await listCredentials(q, deviceUuid)) {
        if (c.action !== 'provision') continue; // an account on its way out: the deprovision removes it anyway
        ids.push(await queue(q, deviceUuid, { kind: 'broker.provision', payload: { brokerId: c.broker_id, reason: 'rotate', setPassword: true } }));
      }
      await q.query('SELECT pg_notify($1, $2)', [DEVICE_CREDENTIALS_CHANNEL, deviceUuid]);
      return ids;
    },

    /** Deletion (in its transaction, before the device row goes): remove its account from every broker that may have one. */
    async forDeletion(q: Queryable, deviceUuid: string): Promise<number[]> {
      await lockDeviceForCredentials(q, deviceUuid);
      const ids: number[] = [];
      for (const c of await listCredentials(q, deviceUuid)) {
        if (c.action === 'deprovision' && c.state === 'removed') continue;
        ids.push(await queue(q, deviceUuid, { kind: 'broker.deprovision', payload: { brokerId: c.broker_id, reason: 'deleted' } }));
      }
      await q.query('SELECT pg_notify($1, $2)', [DEVICE_CREDENTIALS_CHANNEL, deviceUuid]);
      return ids;
    },

    /**
     * A move completed on `toBrokerId` (in the completing transaction): the device's accounts on every other broker
     * go — it can no longer log in where it left.
     */
    async afterMove(q: Queryable, deviceUuid: string, toBrokerId: number): Promise<number[]> {
      // A device without credential rows (its brokers are `static`) has nothing to withdraw, and can gain its first
      // row only through an assignment, which the caller's device lock already excludes: no row lock needed, so a
      // move's completion never waits behind the device's other requests (its jobs ask, for one).
      if ((await listCredentials(q, deviceUuid)).length === 0) return [];
      // Rotation and deletion lock the device row too: one credential chain per pair, written one at a time.
      if (!(await lockDeviceForCredentials(q, deviceUuid))) return [];
      const ids: number[] = [];
      for (const c of await listCredentials(q, deviceUuid)) {
        if (c.broker_id === toBrokerId || c.action !== 'provision') continue;
        ids.push(await queue(q, deviceUuid, { kind: 'broker.deprovision', payload: { brokerId: c.broker_id, reason: 'migrated' } }));
      }
      return ids;
    },

    /** After a rotation or deletion committed: drop the device's sessions on this process's embedded brokers. */
    kickLocal(deviceUuid: string): void {
      opts.kickLocal?.(deviceUuid);
    },

    /** Binds the dispatcher's `waitDelivered` (it is created after this service). */
    bindOutbox(wait: (ids: readonly number[], timeoutMs: number) => Promise<number[]>): void {
      waitDelivered = wait;
    },

    /** Waits (bounded) for credential rows to reach their brokers; resolves with the ids still undelivered. */
    async waitApplied(ids: readonly number[], timeoutMs: number): Promise<number[]> {
      if (ids.length === 0) return [];
      if (!waitDelivered) return [...ids];
      return waitDelivered(ids, timeoutMs);
    },

    /** Where the device's credentials stand, per broker. */
    async credentials(deviceUuid: string): Promise<CredentialView[]> {
      return (await listCredentials(db, deviceUuid)).map(toCredentialView);
    },

    /** Outbox delivery of `broker.provision` / `broker.deprovision`. Throws to have the row retried. */
    async deliver(row: OutboxRow): Promise<void> {
      if (row.kind !== 'broker.provision' && row.kind !== 'broker.deprovision') throw new Error(`not a credential row: ${row.kind}`);
      const deviceUuid = row.deviceUuid;
      if (deviceUuid === null) return;
      const brokerId = row.payload.brokerId;
      const action = row.kind === 'broker.provision' ? 'provision' : 'deprovision';
      const broker = await getBroker(db, brokerId);
      // Deleted, or no longer managed by Switchyard (provisioner changed): nothing to do there.
      if (broker === null || !holdsAccounts(broker)) return;
      const dlog = log.child({ deviceUuid, brokerId, action, reason: row.payload.reason });
      try {
        if (row.kind === 'broker.deprovision') {
          await dynsec.deprovision(broker, deviceUuid);
          await recordCredential(db, deviceUuid, brokerId, 'deprovision', { state: 'removed', tokenHash: null });
          dlog.info('device account removed from the broker');
          return;
        }
        const secret = await getDeviceSecret(db, deviceUuid);
        if (secret === null) return; // deleted meanwhile: its deprovision rows follow
        if (secret.token_enc === null) {
          throw new ProvisioningRefusedError(`device ${deviceUuid} has no stored secret (registered before secrets were kept); rotate its token`);
        }
        let token: string;
        try {
          token = secretBox.decrypt(secret.token_enc);
        } catch {
          throw new ProvisioningRefusedError(
            `the stored secret of device ${deviceUuid} cannot be decrypted (SWITCHYARD_SECRET or secret.key changed since); rotate its token`,
          );
        }
        const known = await getCredential(db, deviceUuid, brokerId);
        await dynsec.provision(broker, { uuid: deviceUuid, token }, {
          setPassword: row.payload.setPassword === true,
          passwordCurrent: known?.token_hash === secret.token_hash && known.state === 'provisioned',
        });
        await recordCredential(db, deviceUuid, brokerId, 'provision', { state: 'provisioned', tokenHash: secret.token_hash });
        dlog.info('device account provisioned on the broker');
      } catch (err) {
        const message = (err as Error).message;
        await recordCredential(db, deviceUuid, brokerId, action, { state: 'failed', error: message });
        if (err instanceof ProvisioningRefusedError) {
          // Retrying cannot help: recorded as failed (visible in the device's credentials), the row is dropped.
          dlog.error({ err: message }, 'device account not provisioned; fix the cause, then rotate the token or assign again');
          return;
        }
        throw err;
      }
    },
  };
  return service;
}

export type ProvisioningService = ReturnType<typeof createProvisioningService>;
