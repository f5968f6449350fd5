/**
 * TLS of the server's broker connections: the `caCert` of a broker record, checked before it is stored, and
 * the reason a TLS connection failed, in words an operator can act on.
 *
 * A `caCert` is one or more PEM certificates (`-----BEGIN CERTIFICATE-----`), a root CA, an intermediate, or
 * the broker's own self-signed certificate. For an `mqtts`/`wss` broker with a `caCert`, the pool trusts those
 * certificates and nothing else; without one, Node's built-in root store. The broker's certificate is always
 * verified, its host name included (`servername` = the record's host; an IP host is matched against the
 * certificate's IP SANs). There is no switch to turn verification off.
 */
import { X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { tlsFailureKind } from '@switchyard/protocol';

/** Largest accepted `caCert`, characters (also the API schema's `maxLength`). */
export const CA_CERT_MAX_LENGTH = 65_536;
/** Most certificates in one `caCert`. */
export const CA_CERT_MAX_COUNT = 32;

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** A parsed `caCert`: the certificates re-encoded as PEM (what is stored and handed to TLS). */
export type CaCertResult = { ok: true; pems: string[]; pem: string } | { ok: false; message: string };

/**
 * Checks a `caCert`: every PEM block a certificate that parses, none expired, no private key, nothing else
 * but whitespace or comment lines (as `openssl` writes them) around the blocks. Never throws; messages never
 * repeat the input.
 * @param now the current time (ms), to refuse an expired certificate
 */
export function parseCaCert(text: string, now = Date.now()): CaCertResult {
  if (text.length > CA_CERT_MAX_LENGTH) return { ok: false, message: `is too long (${text.length} characters; at most ${CA_CERT_MAX_LENGTH})` };
  const pems: string[] = [];
  let n = 0;
  for (const m of text.matchAll(BLOCK_RE)) {
    n += 1;
    const label = m[1] ?? '';
    if (/PRIVATE KEY/.test(label)) {
      return { ok: false, message: `block #${n} is a private key (${label}); caCert holds certificates only — never send a key` };
    }
    if (label !== 'CERTIFICATE') return { ok: false, message: `block #${n} is a ${label}, not a CERTIFICATE` };
    if (n > CA_CERT_MAX_COUNT) return { ok: false, message: `holds more than ${CA_CERT_MAX_COUNT} certificates` };
    let cert: X509Certificate;
    try {
      cert = new X509Certificate(m[0]);
    } catch {
      return { ok: false, message: `certificate #${n} cannot be parsed (not valid base64 DER X.509)` };
    }
    const notAfter = Date.parse(cert.validTo);
    if (Number.isFinite(notAfter) && notAfter < now) {
      return { ok: false, message: `certificate #${n} (${subjectOf(cert)}) expired on ${new Date(notAfter).toISOString()}` };
    }
    pems.push(cert.toString());
  }
  if (n === 0) return { ok: false, message: 'holds no PEM certificate (expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)' };
  return { ok: true, pems, pem: pems.join('') };
}

/** `CN=…` of a certificate (or its whole subject), short. */
function subjectOf(cert: X509Certificate): string {
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  const s = cn !== undefined ? `CN=${cn}` : cert.subject.replace(/\n/g, ', ');
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export { tlsFailureKind, type TlsFailureKind } from '@switchyard/protocol';

/**
 * One sentence for a failed TLS connection to a broker, or null when `err` is no TLS failure.
 * E.g. `TLS certificate verify failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain):
 * the broker's certificate is not signed by the broker record's caCert`.
 * @param hasCaCert whether the broker record names its own CA (changes the hint)
 */
export function describeBrokerTlsFailure(err: unknown, hasCaCert: boolean): string | null {
  const kind = tlsFailureKind(err);
  if (kind === null) return null;
  const e = err as Error & { code: string };
  const detail = `${e.code}: ${e.message}`;
  switch (kind) {
    case 'untrusted':
      return `TLS certificate verify failed (${detail}): the broker's certificate is not signed by ${
        hasCaCert ? "the broker record's caCert" : "a CA in Node's root store; set the broker record's caCert to the CA that signed it"
      }`;
    case 'hostname':
      return `TLS host name check failed (${e.message}): the broker record's host must be a name or IP address in the certificate's subjectAltName`;
    case 'validity':
      return `TLS certificate verify failed (${detail}): check the broker's certificate dates and this server's clock`;
    case 'verify':
      return `TLS certificate verify failed (${detail})`;
    case 'handshake':
      return `TLS handshake failed (${detail}): is this port a TLS listener, and does it speak a TLS version Node accepts?`;
    default: {
      const never: never = kind;
      return String(never);
    }
  }
}

/** The TLS part of a broker connection's options (`mqtt-link.ts` passes them to `tls.connect`, or to `ws` for `wss`). */
export interface BrokerTlsOptions {
  rejectUnauthorized?: true;
  servername?: string;
  ca?: string[];
}

/**
 * TLS options for a broker record: none for `mqtt`/`ws`; for `mqtts`/`wss` verification on, the host name as
 * SNI and for the name check (an IP literal is matched against the certificate's IP SANs instead), and the
 * record's CA when it has one. A string when the stored `caCert` is unusable (a record written before the API
 * checked it, or by hand): the reason, to show as the connection's error.
 */
export function brokerTlsOptions(b: { id: number; protocol: string; host: string; caCert?: string | null | undefined }): BrokerTlsOptions | string {
  if (b.protocol !== 'mqtts' && b.protocol !== 'wss') return {};
  const options: BrokerTlsOptions = { rejectUnauthorized: true };
  if (isIP(b.host) === 0) options.servername = b.host;
  if (b.caCert) {
    const parsed = parseCaCert(b.caCert, 0); // expiry is TLS's to report, with the certificate's own dates
    if (!parsed.ok) return `the broker record's caCert is unusable: it ${parsed.message}; fix it with PATCH /api/v1/brokers/${b.id}`;
    options.ca = parsed.pems;
  }
  return options;
}
