/**
 * Why a TLS connection to a broker failed, in one sentence a device's operator can act on. It becomes the
 * reason of a failed move (`reported.mqtt.error`, the migration row's `error`), so it names the TLS problem
 * and the fix on the device side. Pure.
 */

/** OpenSSL verification results that mean "not signed by a CA the agent trusts". */
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

/**
 * The sentence for a TLS failure, or null when `err` is not one (a refused CONNECT, ECONNREFUSED, …).
 * E.g. `TLS certificate verify failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain):
 * the broker's certificate is not signed by a CA this agent trusts (add its CA to --ca-file)`.
 */
export function describeTlsFailure(err: unknown): string | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return null;
  const message = err instanceof Error ? err.message : String(err);
  const detail = `${code}: ${message}`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `TLS host name check failed (${message}): the broker's host is not a name or IP address in its certificate`;
  }
  if (UNTRUSTED.has(code)) return `TLS certificate verify failed (${detail}): the broker's certificate is not signed by a CA this agent trusts (add its CA to --ca-file)`;
  if (VALIDITY.has(code)) return `TLS certificate verify failed (${detail}): check the certificate's dates and the device clock`;
  if (OTHER_VERIFY.has(code)) return `TLS certificate verify failed (${detail})`;
  if (code.startsWith('ERR_SSL_') || code === 'EPROTO') return `TLS handshake failed (${detail}): is the broker's port a TLS listener?`;
  return null;
}
