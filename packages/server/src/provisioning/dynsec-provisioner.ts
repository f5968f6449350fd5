/**
 * The `mosquitto-dynsec` provisioner: a device's account on a Mosquitto broker with the dynamic-security plugin —
 * client `username = clientid = uuid`, password = the device token, one role of its own (`dynsec-acl.ts`).
 *
 * Every step is idempotent (the outbox delivers at least once) and touches only what Switchyard created:
 * - provision: `createRole` (with its ACLs) + `createClient` in one message. When either exists already, the
 *   second message reads them back (`getRole`, `getClient`) and the third repairs what differs: missing or stray
 *   ACLs, a disabled client, a client id that is not the uuid, a password that may not be current. A client of that
 *   name that does not carry the device's role is someone else's account (an operator's, or the server's own): it is
 *   never changed, and the provisioning fails for good ({@link ProvisioningRefusedError}).
 * - `setClientPassword` drops the client's live sessions (measured on 2.0.11), so it is only sent when the password
 *   may differ: on rotation, or when the broker's copy is not known to be the current token.
 * - deprovision: `deleteClient` (drops any live session at once) + `deleteRole`, only for a client that carries the
 *   device's role; "not found" counts as done.
 * No command is ever logged (they hold the token); errors name the broker, the device and the plugin's message.
 */
import { MANAGED_CLIENT_TEXTNAME, deviceRoleAcls, deviceRoleName, type DynsecAcl } from './dynsec-acl.ts';
import { DynsecUnavailableError, type DynsecCommand, type DynsecControl, type DynsecResponse } from './dynsec-control.ts';

/** Provisioning cannot succeed by retrying (an account Switchyard does not own, no usable secret): it is recorded as failed and dropped. */
export class ProvisioningRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisioningRefusedError';
  }
}

export interface DynsecBroker {
  id: number;
  name: string;
  /** The server's own account on the broker: a device with this uuid must never be provisioned over it. */
  username: string | null;
}

export interface ProvisionOptions {
  /** Set the password even when the broker's copy is believed current (rotation). */
  setPassword: boolean;
  /** The broker is known to hold this very token already (from the credential row): no password change is needed. */
  passwordCurrent: boolean;
}

interface ClientView {
  clientid?: string;
  disabled?: boolean;
  roles: Array<{ rolename: string }>;
}

const aclKey = (a: { acltype: string; topic: string }): string => `${a.acltype} ${a.topic}`;

export function createDynsecProvisioner(control: DynsecControl) {
  async function run(broker: DynsecBroker, commands: DynsecCommand[]): Promise<DynsecResponse[]> {
    return control.run(broker.id, commands);
  }

  function fail(broker: DynsecBroker, deviceUuid: string, r: DynsecResponse): never {
    throw new DynsecUnavailableError(`dynamic-security ${r.command} for device ${deviceUuid} on broker ${broker.name} (id ${broker.id}) failed: ${r.error ?? 'no answer'}`);
  }

  function ok(broker: DynsecBroker, deviceUuid: string, r: DynsecResponse | undefined, tolerated: string[] = []): DynsecResponse {
    if (!r) throw new DynsecUnavailableError(`dynamic-security gave no answer for device ${deviceUuid} on broker ${broker.name} (id ${broker.id})`);
    if (r.error !== undefined && !tolerated.includes(r.error)) fail(broker, deviceUuid, r);
    return r;
  }

  async function provision(broker: DynsecBroker, device: { uuid: string; token: string }, o: ProvisionOptions): Promise<void> {
    const uuid = device.uuid;
    if (broker.username !== null && broker.username === uuid) {
      throw new ProvisioningRefusedError(`device ${uuid} has the same name as the server's own account on broker ${broker.name} (id ${broker.id}); it cannot be provisioned there`);
    }
    const rolename = deviceRoleName(uuid);
    const acls = deviceRoleAcls(uuid);
    const [roleRes, clientRes] = await run(broker, [
      { command: 'createRole', rolename, textname: `Switchyard device ${uuid}`, acls },
      { command: 'createClient', username: uuid, password: device.token, clientid: uuid, textname: MANAGED_CLIENT_TEXTNAME, roles: [{ rolename }] },
    ]);
    const roleExisted = ok(broker, uuid, roleRes, ['Role already exists']).error !== undefined;
    const clientExisted = ok(broker, uuid, clientRes, ['Client already exists']).error !== undefined;
    if (!roleExisted && !clientExisted) return;

    const reads: DynsecCommand[] = [];
    if (roleExisted) reads.push({ command: 'getRole', rolename });
    if (clientExisted) reads.push({ command: 'getClient', username: uuid });
    const answers = await run(broker, reads);
    const fixes: DynsecCommand[] = [];
    let at = 0;
    if (roleExisted) {
      const role = ok(broker, uuid, answers[at++]).data?.role as { acls?: DynsecAcl[] } | undefined;
      fixes.push(...reconcileAcls(rolename, role?.acls ?? [], acls));
    }
    if (clientExisted) {
      const client = ok(broker, uuid, answers[at++]).data?.client as ClientView | undefined;
      if (!client || !client.roles.some((r) => r.rolename === rolename)) {
        if (!roleExisted) await run(broker, [{ command: 'deleteRole', rolename }]); // the role just made is useless
        throw new ProvisioningRefusedError(
          `broker ${broker.name} (id ${broker.id}) already has a dynamic-security client named "${uuid}" that Switchyard did not create (it lacks the role ${rolename}); it was left unchanged`,
        );
      }
      if (client.clientid !== uuid) fixes.push({ command: 'modifyClient', username: uuid, clientid: uuid });
      if (o.setPassword || !o.passwordCurrent) fixes.push({ command: 'setClientPassword', username: uuid, password: device.token });
      if (client.disabled === true) fixes.push({ command: 'enableClient', username: uuid });
    }
    if (fixes.length === 0) return;
    const results = await run(broker, fixes);
    fixes.forEach((_, i) => ok(broker, uuid, results[i]));
  }

  async function deprovision(broker: DynsecBroker, deviceUuid: string): Promise<void> {
    const rolename = deviceRoleName(deviceUuid);
    const [read] = await run(broker, [{ command: 'getClient', username: deviceUuid }]);
    const found = ok(broker, deviceUuid, read, ['Client not found']);
    const client = found.error === undefined ? (found.data?.client as ClientView | undefined) : undefined;
    const ours = client !== undefined && client.roles.some((r) => r.rolename === rolename);
    const commands: DynsecCommand[] = [];
    if (ours) commands.push({ command: 'deleteClient', username: deviceUuid });
    commands.push({ command: 'deleteRole', rolename });
    const results = await run(broker, commands);
    commands.forEach((c, i) => ok(broker, deviceUuid, results[i], [c.command === 'deleteRole' ? 'Role not found' : 'Client not found']));
  }

  return { provision, deprovision };
}

/** Commands that turn the role's `current` ACLs into `wanted` (stray ones removed, missing ones added). */
export function reconcileAcls(rolename: string, current: DynsecAcl[], wanted: DynsecAcl[]): DynsecCommand[] {
  const want = new Map(wanted.map((a) => [aclKey(a), a]));
  const have = new Map(current.map((a) => [aclKey(a), a]));
  const out: DynsecCommand[] = [];
  for (const [key, a] of have) {
    const w = want.get(key);
    if (!w || w.allow !== a.allow) out.push({ command: 'removeRoleACL', rolename, acltype: a.acltype, topic: a.topic });
  }
  for (const [key, a] of want) {
    const h = have.get(key);
    if (!h || h.allow !== a.allow) out.push({ command: 'addRoleACL', rolename, acltype: a.acltype, topic: a.topic, allow: a.allow });
  }
  return out;
}

export type DynsecProvisioner = ReturnType<typeof createDynsecProvisioner>;
