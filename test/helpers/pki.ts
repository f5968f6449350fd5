/**
 * A throwaway certificate authority for TLS tests, made with the `openssl` command (≈ 0.2 s per key pair).
 *
 * `createTestPki()` writes a CA, a server certificate for `localhost` (SAN `DNS:localhost, IP:127.0.0.1`) and,
 * on request, server certificates for other names (`serverFor(['broker.example.test'])`: a listener whose
 * certificate does not name the host a client dials, to test host name verification) and client certificates
 * whose CN is a device uuid (for mutual TLS, e.g. AWS's v1 device SDK). Every file
 * is readable by all (mode 0644, directory 0755): Mosquitto started as root reads them as user `mosquitto`.
 * Keys are throwaway and valid for two days. `remove()` deletes the directory.
 *
 * Guard a suite that uses it with `realServers(['mosquitto'])` and {@link opensslAvailable}.
 */
import { spawnSync } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { findExecutable, testTempRoot } from '../../scripts/test-servers.mjs';

export interface CertFiles {
  /** PEM certificate path. */
  cert: string;
  /** PEM private key path (unencrypted). */
  key: string;
}

export interface TestPki {
  dir: string;
  /** The CA certificate path and its PEM text (what a broker record's `caCert` holds). */
  caFile: string;
  caPem: string;
  /** Server certificate for `localhost` / 127.0.0.1, signed by the CA. */
  server: CertFiles;
  /**
   * A server certificate signed by the CA whose subjectAltName holds exactly `names` (each an IPv4 address →
   * `IP:`, anything else → `DNS:`); the CN is the first name. E.g. `serverFor(['broker.example.test'])`.
   */
  serverFor(names: readonly string[]): Promise<CertFiles>;
  /** A client certificate with this CN (e.g. a device uuid), signed by the CA. */
  client(commonName: string): Promise<CertFiles>;
  /** A second, unrelated CA (PEM text and path): a broker record naming it must fail verification. */
  otherCa(): Promise<{ caFile: string; caPem: string }>;
  remove(): Promise<void>;
}

export function opensslAvailable(): boolean {
  return findExecutable('openssl') !== null;
}

function openssl(args: string[], cwd: string): void {
  const r = spawnSync('openssl', args, { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed: ${r.stderr}`);
}

async function makeCa(dir: string, name: string, cn: string): Promise<{ caFile: string; caPem: string }> {
  openssl(
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${cn}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
    dir,
  );
  const caFile = join(dir, `${name}.crt`);
  return { caFile, caPem: await readFile(caFile, 'utf8') };
}

async function signed(dir: string, name: string, cn: string, ext: string): Promise<CertFiles> {
  await writeFile(join(dir, `${name}.ext`), ext);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`], dir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`], dir);
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  await chmod(files.cert, 0o644);
  await chmod(files.key, 0o644);
  return files;
}

export async function createTestPki(): Promise<TestPki> {
  const dir = await mkdtemp(join(testTempRoot(), 'sy-pki-'));
  await chmod(dir, 0o755);
  try {
    const ca = await makeCa(dir, 'ca', 'Switchyard Test Root CA');
    await chmod(ca.caFile, 0o644);
    const server = await signed(dir, 'server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
    let clients = 0;
    let servers = 0;
    return {
      dir,
      caFile: ca.caFile,
      caPem: ca.caPem,
      server,
      serverFor(names) {
        if (names.length === 0) return Promise.reject(new Error('serverFor needs at least one name'));
        for (const n of names) if (!/^[A-Za-z0-9.-]{1,253}$/.test(n)) return Promise.reject(new Error(`serverFor: ${JSON.stringify(n)} is not a host name or IPv4 address`));
        servers += 1;
        const san = names.map((n) => (/^\d{1,3}(\.\d{1,3}){3}$/.test(n) ? `IP:${n}` : `DNS:${n}`)).join(',');
        return signed(dir, `server-${servers}`, names[0]!, `subjectAltName=${san}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n`);
      },
      client: (commonName) => {
        clients += 1;
        return signed(dir, `client-${clients}`, commonName, 'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n');
      },
      async otherCa() {
        const other = await makeCa(dir, 'other-ca', 'Unrelated Test CA');
        await chmod(other.caFile, 0o644);
        return other;
      },
      remove: () => rm(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
