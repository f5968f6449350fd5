/**
 * Identifier rules shared by every part of Switchyard.
 *
 * Device UUIDs and shadow names become MQTT topic segments, so they must never hold `/`, `+`, `#`, `$` or
 * NUL: a `+` or `#` would turn a publish topic into a filter, a `/` would shift every later segment, and a
 * leading `$` collides with broker-reserved topics.
 */

/** Valid device UUID: 1–128 characters of `[A-Za-z0-9:_-]` (the AWS thing-name pattern). */
export const DEVICE_UUID_RE = /^[A-Za-z0-9:_-]{1,128}$/;

/**
 * Valid shadow name: 1–64 characters of `[A-Za-z0-9:_-]`. AWS also allows `$`; Switchyard never does, because
 * a shadow name is a topic segment. The classic shadow is {@link CLASSIC_SHADOW} (`''`), which is not matched here.
 */
export const SHADOW_NAME_RE = /^[A-Za-z0-9:_-]{1,64}$/;

/** The classic (unnamed) shadow's name, everywhere in code and in the database: the empty string. */
export const CLASSIC_SHADOW = '';

/** The named shadow whose `desired.mqtt` carries the broker assignment (owned by the server). */
export const BROKER_SHADOW = 'device-state';

/** True when `s` is a string matching {@link DEVICE_UUID_RE}. */
export function isValidDeviceUuid(s: unknown): s is string {
  return typeof s === 'string' && DEVICE_UUID_RE.test(s);
}

/** True when `s` is a string matching {@link SHADOW_NAME_RE}. The classic shadow (`''`) is not a valid *name*. */
export function isValidShadowName(s: unknown): s is string {
  return typeof s === 'string' && SHADOW_NAME_RE.test(s);
}
