/**
 * Why a TLS connection to a broker failed, in one sentence a device's operator can act on. It becomes the
 * reason of a failed move (`reported.mqtt.error`, the migration row's `error`), so it names the TLS problem
 * and the fix on the device side. Pure.
 */
import { tlsFailureKind } from '@switchyard/protocol';

/**
 * The sentence for a TLS failure, or null when `err` is not one (a refused CONNECT, ECONNREFUSED, …).
 * E.g. `TLS certificate verify failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain):
 * the broker's certificate is not signed by a CA this agent trusts (add its CA to --ca-file)`.
 */
export function describeTlsFailure(err: unknown): string | null {
  const kind = tlsFailureKind(err);
  if (kind === null) return null;
  const message = err instanceof Error ? err.message : String(err);
  const detail = `${(err as { code: string }).code}: ${message}`;
  switch (kind) {
    case 'hostname':
      return `TLS host name check failed (${message}): the broker's host is not a name or IP address in its certificate`;
    case 'untrusted':
      return `TLS certificate verify failed (${detail}): the broker's certificate is not signed by a CA this agent trusts (add its CA to --ca-file)`;
    case 'validity':
      return `TLS certificate verify failed (${detail}): check the certificate's dates and the device clock`;
    case 'verify':
      return `TLS certificate verify failed (${detail})`;
    case 'handshake':
      return `TLS handshake failed (${detail}): is the broker's port a TLS listener?`;
  }
}
