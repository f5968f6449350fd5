/**
 * What a device — and the Switchyard server itself — may do on a Mosquitto broker with the dynamic-security
 * plugin, as dynsec ACLs. Pure: no I/O.
 *
 * Mosquitto 2.0 does not expand `%u` / `%c` in dynamic-security ACLs, so every device gets a role of its own,
 * `switchyard-device-{uuid}`, holding only its own topics. The broker's default ACL access must be deny for
 * `publishClientSend`, `publishClientReceive` and `subscribe` (see docs/security.md); everything below is an allow.
 *
 * How "a device may not publish `accepted`, `delta`, `documents`, commands or job notifications" is expressed:
 * by **not** allowing them. `publishClientSend` lists exactly the device→server topics of the device's own
 * namespaces, derived from the very filters the server subscribes to (`SHADOW_REQUEST_SUBSCRIPTIONS`,
 * `JOBS_REQUEST_SUBSCRIPTIONS`) with the device's uuid in place of the `+`, plus its `status`, its command acks and
 * its telemetry. MQTT filters match whole levels, so `…/shadow/update` does not match `…/shadow/update/delta`, and
 * `…/jobs/+/get` does not match `…/jobs/notify-next`: every server→device topic falls through to the default deny.
 * An allow-list cannot be undone by a priority mistake, unlike "allow `iot/device/{uuid}/#`, deny the replies".
 * (Under MQTT 3.1.1 Mosquitto still PUBACKs a denied publish and drops it; under v5 it answers 0x87.)
 *
 * Subscriptions (`subscribePattern`) and deliveries (`publishClientReceive`) are allowed inside the device's own
 * namespaces, `iot/device/{uuid}/#` and `$aws/things/{uuid}/#` (`#` never matches `$` topics, hence both), like
 * the embedded brokers: wildcards inside its namespace work (the agent subscribes to `…/jobs/+/get/+`), anything
 * outside — another device, `#`, `$SYS` — gets SUBACK 0x80. Only the server and the device itself can publish
 * there (the publish allow-lists above), so the device receives nothing but the server's messages and its own.
 */
import { JOBS_REQUEST_SUBSCRIPTIONS, SHADOW_REQUEST_SUBSCRIPTIONS, commandTopic, isValidDeviceUuid, statusTopic, type Namespace } from '@switchyard/protocol';

export type DynsecAclType = 'publishClientSend' | 'publishClientReceive' | 'subscribePattern' | 'subscribeLiteral' | 'unsubscribePattern' | 'unsubscribeLiteral';

export interface DynsecAcl {
  acltype: DynsecAclType;
  topic: string;
  allow: boolean;
  priority?: number;
}

/** Topic the plugin takes commands on, and the one it answers on. */
export const DYNSEC_CONTROL_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = '$CONTROL/dynamic-security/v1/response';

/** `textname` of every client Switchyard creates (an operator reading the dynsec file sees who owns it). */
export const MANAGED_CLIENT_TEXTNAME = 'Switchyard device (managed by the Switchyard server; do not edit)';

const NAMESPACES: readonly Namespace[] = ['iot', 'aws'];

/** The device's own role on a dynsec broker. */
export function deviceRoleName(deviceUuid: string): string {
  return `switchyard-device-${deviceUuid}`;
}

/** Replaces the device level (`+`, third level) of a server subscription filter by the uuid. */
function forDevice(filter: string, deviceUuid: string): string {
  const parts = filter.split('/');
  if (parts[2] !== '+') throw new Error(`unexpected request filter ${filter}`);
  parts[2] = deviceUuid;
  return parts.join('/');
}

/** The topic filters a device may publish on: its own device→server topics, in both namespaces. */
export function devicePublishFilters(deviceUuid: string): string[] {
  if (!isValidDeviceUuid(deviceUuid)) throw new TypeError(`invalid device uuid: ${JSON.stringify(deviceUuid)}`);
  const filters: string[] = [];
  for (const ns of NAMESPACES) {
    for (const f of [...SHADOW_REQUEST_SUBSCRIPTIONS(ns), ...JOBS_REQUEST_SUBSCRIPTIONS(ns)]) filters.push(forDevice(f, deviceUuid));
  }
  filters.push(statusTopic(deviceUuid), commandTopic(deviceUuid, 'broker-change', true), `iot/device/${deviceUuid}/telemetry/+`);
  return filters;
}

/** The device's namespaces as filters: where it may subscribe and from where messages may reach it. */
export function deviceNamespaceFilters(deviceUuid: string): string[] {
  if (!isValidDeviceUuid(deviceUuid)) throw new TypeError(`invalid device uuid: ${JSON.stringify(deviceUuid)}`);
  return [`iot/device/${deviceUuid}/#`, `$aws/things/${deviceUuid}/#`];
}

/** Every ACL of the device's role (all allows; the broker's defaults deny the rest). */
export function deviceRoleAcls(deviceUuid: string): DynsecAcl[] {
  return [
    ...devicePublishFilters(deviceUuid).map((topic) => ({ acltype: 'publishClientSend' as const, topic, allow: true })),
    ...deviceNamespaceFilters(deviceUuid).map((topic) => ({ acltype: 'subscribePattern' as const, topic, allow: true })),
    ...deviceNamespaceFilters(deviceUuid).map((topic) => ({ acltype: 'publishClientReceive' as const, topic, allow: true })),
  ];
}

/**
 * The ACLs of the role the Switchyard server's own account needs on a dynsec broker: every device topic in both
 * namespaces (it answers requests and publishes replies, deltas, commands, job notifications) and the plugin's
 * control topic (it creates, changes and removes device accounts). Documented in docs/security.md; the test
 * helper creates exactly this role.
 */
export function serverRoleAcls(): DynsecAcl[] {
  const acls: DynsecAcl[] = [];
  for (const topic of ['iot/#', '$aws/#']) {
    acls.push({ acltype: 'publishClientSend', topic, allow: true });
    acls.push({ acltype: 'subscribePattern', topic, allow: true });
    acls.push({ acltype: 'publishClientReceive', topic, allow: true });
  }
  acls.push({ acltype: 'publishClientSend', topic: DYNSEC_CONTROL_TOPIC, allow: true });
  acls.push({ acltype: 'subscribePattern', topic: DYNSEC_RESPONSE_TOPIC, allow: true });
  acls.push({ acltype: 'publishClientReceive', topic: DYNSEC_RESPONSE_TOPIC, allow: true });
  return acls;
}

