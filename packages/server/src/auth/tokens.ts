/**
 * Bearer tokens. A token is a prefix plus 32 random bytes in base64url: `sya_…` for admin tokens (the bootstrap
 * one and API tokens of scope admin), `syo_…` / `syv_…` for API tokens of scope operator / viewer, `syd_…` for
 * device tokens (the prefix makes a leaked token recognisable to secret scanners and tells the reader which
 * kind it is; the scope itself is what the database holds, never what the prefix says). Only the sha256 of a
 * token is stored; the token itself is shown once.
 */
import { hash as oneShotHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const ADMIN_TOKEN_PREFIX = 'sya_';
export const DEVICE_TOKEN_PREFIX = 'syd_';
export const OPERATOR_TOKEN_PREFIX = 'syo_';
export const VIEWER_TOKEN_PREFIX = 'syv_';
export type TokenPrefix = typeof ADMIN_TOKEN_PREFIX | typeof DEVICE_TOKEN_PREFIX | typeof OPERATOR_TOKEN_PREFIX | typeof VIEWER_TOKEN_PREFIX;

/** The prefix of a new API token of `scope`. */
export function apiTokenPrefix(scope: 'admin' | 'operator' | 'viewer'): TokenPrefix {
  return scope === 'admin' ? ADMIN_TOKEN_PREFIX : scope === 'operator' ? OPERATOR_TOKEN_PREFIX : VIEWER_TOKEN_PREFIX;
}

/** A new random token: `prefix` + 32 random bytes, base64url (43 characters). */
export function generateToken(prefix: TokenPrefix): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** sha256 of the token, lower-case hex (64 characters): what the database and the admin-token check keep. */
export function hashToken(token: string): string {
  return oneShotHash('sha256', token, 'hex');
}

/** Compares two sha256 hex digests in constant time (false when either is not a 64-character hex string). */
export function hashesEqual(a: string, b: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(a) || !/^[0-9a-f]{64}$/.test(b)) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

/** True when `token` hashes to `hash`, compared in constant time. */
export function tokenMatchesHash(token: string, hash: string): boolean {
  return hashesEqual(hashToken(token), hash);
}
