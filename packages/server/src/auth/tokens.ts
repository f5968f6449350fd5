/**
 * Bearer tokens. A token is a prefix plus 32 random bytes in base64url: `sya_…` for admin tokens, `syd_…` for
 * device tokens (the prefix makes a leaked token recognisable to secret scanners and tells the reader which
 * kind it is). Only the sha256 of a token is stored; the token itself is shown once.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export const ADMIN_TOKEN_PREFIX = 'sya_';
export const DEVICE_TOKEN_PREFIX = 'syd_';
export type TokenPrefix = typeof ADMIN_TOKEN_PREFIX | typeof DEVICE_TOKEN_PREFIX;

/** A new random token: `prefix` + 32 random bytes, base64url (43 characters). */
export function generateToken(prefix: TokenPrefix): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** sha256 of the token, lower-case hex (64 characters): what the database and the admin-token check keep. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
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
