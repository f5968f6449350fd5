/**
 * Which certificate authorities the agent trusts for `mqtts`/`wss` brokers.
 *
 * Trust anchors reach a device out of band, never through the control plane: the agent trusts Node's built-in
 * root store, the certificates of `NODE_EXTRA_CA_CERTS` (as Node itself would), and a CA bundle given with
 * `--ca-file` / `SWITCHYARD_CA_FILE` (or the `ca` option of `createAgent`) — the same set for every broker.
 * A CA carried in `desired.mqtt` would let whoever can write the shadow (or spoof the current broker) vouch for
 * the broker it sends the device to, so the server never sends one and the agent would not take it.
 *
 * The bundle is checked once, at start, with a precise error (`AgentConfigError`, option `--ca-file`): the file
 * missing or unreadable, no PEM certificate in it, a block that does not parse, a private key in it.
 * Building a TLS context from ~150 roots costs ~40 ms of CPU, so one context per trust set is built and shared
 * ({@link trustContext}); every connection reuses it.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { AgentConfigError } from '../config.ts';

/** Largest accepted CA file, bytes (a full public root bundle is ~220 KB). */
export const CA_FILE_MAX_BYTES = 1024 * 1024;

const BLOCK_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * The certificates of a PEM text, re-encoded, or a problem (one sentence, never repeating the text).
 * Text around the blocks (comments, `subject=` lines as `openssl` writes them) is ignored.
 */
export function parsePemCertificates(text: string): { ok: true; pems: string[] } | { ok: false; message: string } {
  const pems: string[] = [];
  let n = 0;
  for (const m of text.matchAll(BLOCK_RE)) {
    n += 1;
    const label = m[1] ?? '';
    if (/PRIVATE KEY/.test(label)) return { ok: false, message: `block #${n} is a private key (${label}); a CA file holds certificates only` };
    if (label !== 'CERTIFICATE') return { ok: false, message: `block #${n} is a ${label}, not a CERTIFICATE` };
    try {
      pems.push(new X509Certificate(m[0]).toString());
    } catch {
      return { ok: false, message: `certificate #${n} cannot be parsed (not valid base64 DER X.509)` };
    }
  }
  if (n === 0) return { ok: false, message: 'holds no PEM certificate (expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)' };
  return { ok: true, pems };
}

/**
 * Reads and checks a CA bundle file.
 * @param option how the error names the source, e.g. `--ca-file` or `SWITCHYARD_CA_FILE`
 * @throws AgentConfigError naming `option` and the path: not found, not a file, unreadable, too large, not PEM
 */
export async function readCaFile(path: string, option = '--ca-file'): Promise<string[]> {
  const fail = (message: string): never => {
    throw new AgentConfigError([{ option, message: `${JSON.stringify(path)}: ${message}` }]);
  };
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) fail('is not a regular file');
    size = st.size;
  } catch (err) {
    if (err instanceof AgentConfigError) throw err;
    const code = (err as { code?: unknown }).code;
    return fail(code === 'ENOENT' ? 'file not found' : code === 'EACCES' ? 'permission denied' : `cannot be read (${String(code ?? (err as Error).message)})`);
  }
  if (size > CA_FILE_MAX_BYTES) fail(`is too large (${size} bytes; at most ${CA_FILE_MAX_BYTES})`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return fail(code === 'EACCES' ? 'permission denied' : `cannot be read (${String(code ?? (err as Error).message)})`);
  }
  const parsed = parsePemCertificates(text);
  if (!parsed.ok) return fail(`not a PEM CA bundle: it ${parsed.message}`);
  return parsed.pems;
}

/** The certificates of `NODE_EXTRA_CA_CERTS`, which Node stops adding once a `ca` is given; [] when unset or unusable (Node warned at start-up). */
export function nodeExtraCaCertificates(env: Readonly<Record<string, string | undefined>> = process.env): string[] {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (file === undefined || file === '') return [];
  try {
    const parsed = parsePemCertificates(readFileSync(file, 'utf8'));
    return parsed.ok ? parsed.pems : [];
  } catch {
    return []; // Node already printed "Warning: Ignoring extra certs from …" at start-up
  }
}

const contexts = new Map<string, SecureContext>();
/** Shared contexts kept at most (one per distinct trust set; a process normally has one). */
const MAX_CONTEXTS = 8;

/**
 * A TLS context trusting Node's root store, `NODE_EXTRA_CA_CERTS` and `extraCas`; the same object for the same
 * set (built once: see the module comment).
 */
export function trustContext(extraCas: readonly string[], env: Readonly<Record<string, string | undefined>> = process.env): SecureContext {
  const ca = [...rootCertificates, ...nodeExtraCaCertificates(env), ...extraCas];
  const key = createHash('sha256').update(ca.join('\n')).digest('hex');
  let context = contexts.get(key);
  if (context === undefined) {
    context = createSecureContext({ ca });
    if (contexts.size >= MAX_CONTEXTS) contexts.delete(contexts.keys().next().value as string);
    contexts.set(key, context);
  }
  return context;
}

/**
 * The agent's trust at start: `ca` (PEM text from a library caller), else the `caFile` bundle, else undefined
 * (Node's default store).
 * @throws AgentConfigError naming `ca` or `--ca-file` when the certificates are unusable
 */
export async function loadTrust(source: { ca?: string | readonly string[] | undefined; caFile?: string | null | undefined }): Promise<SecureContext | undefined> {
  if (source.ca !== undefined) {
    const parsed = parsePemCertificates(typeof source.ca === 'string' ? source.ca : source.ca.join('\n'));
    if (!parsed.ok) throw new AgentConfigError([{ option: 'ca', message: `not a PEM CA bundle: it ${parsed.message}` }]);
    return trustContext(parsed.pems);
  }
  if (source.caFile) return trustContext(await readCaFile(source.caFile, '--ca-file'));
  return undefined;
}
