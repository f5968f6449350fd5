/**
 * What kind of TLS failure a connection error is, from Node's / OpenSSL's error code. Shared by the server (a
 * broker the pool cannot verify) and the agent (a move's failure reason), which each word the sentence for
 * their own reader. Pure.
 */

/** OpenSSL verification results that mean "not signed by a CA we trust". */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
]);
const VALIDITY = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const OTHER_VERIFY = new Set(['CERT_REJECTED', 'CERT_REVOKED', 'INVALID_CA', 'INVALID_PURPOSE', 'PATH_LENGTH_EXCEEDED', 'HOSTNAME_MISMATCH', 'CERT_CHAIN_TOO_LONG']);

/** What kind of TLS failure an error is (null: not a TLS failure). */
export type TlsFailureKind = 'untrusted' | 'hostname' | 'validity' | 'verify' | 'handshake';

/** Classifies a connection error by its `code` (null when it is no TLS failure: ECONNREFUSED, a refused CONNECT, …). */
export function tlsFailureKind(err: unknown): TlsFailureKind | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return null;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'hostname';
  if (UNTRUSTED.has(code)) return 'untrusted';
  if (VALIDITY.has(code)) return 'validity';
  if (OTHER_VERIFY.has(code)) return 'verify';
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO') return 'handshake';
  return null;
}
