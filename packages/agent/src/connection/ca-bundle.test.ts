import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { AgentConfigError } from '../config.ts';
import { CA_FILE_MAX_BYTES, loadTrust, nodeExtraCaCertificates, parsePemCertificates, readCaFile, trustContext } from './ca-bundle.ts';
import { describeTlsFailure } from './tls-failure.ts';

// Real certificates without openssl: two of Node's bundled roots.
const A = rootCertificates[0]!;
const B = rootCertificates[1]!;
const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

/** The AgentConfigError a promise rejects with. */
async function configError(p: Promise<unknown>): Promise<AgentConfigError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof AgentConfigError, String(err));
    return err;
  }
  assert.fail('expected an AgentConfigError');
}

describe('ca-bundle', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sy-ca-bundle-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads a bundle of several certificates, ignoring text around the blocks', async () => {
    const file = join(dir, 'bundle.pem');
    await writeFile(file, `# broker CA\nsubject=CN = x\n${A}\n\n${B}`);
    const pems = await readCaFile(file);
    assert.deepEqual(pems.map(fp), [fp(A), fp(B)]);
  });

  const badFiles: Array<[string, string | null, RegExp]> = [
    ['a missing file', null, /: file not found$/],
    ['an empty file', '', /not a PEM CA bundle: it holds no PEM certificate/],
    ['a DER or random file', 'garbage\u0000\u0001', /not a PEM CA bundle: it holds no PEM certificate/],
    ['a broken certificate', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', /certificate #1 cannot be parsed/],
    ['a private key', `${A}-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n`, /block #2 is a private key \(EC PRIVATE KEY\)/],
  ];
  for (const [what, content, message] of badFiles) {
    it(`refuses ${what}, naming --ca-file and the path`, async () => {
      const file = join(dir, `bad-${what.replace(/\W+/g, '-')}.pem`);
      if (content !== null) await writeFile(file, content);
      const err = await configError(readCaFile(file));
      assert.equal(err.issues.length, 1);
      assert.equal(err.issues[0]?.option, '--ca-file');
      assert.ok(err.issues[0]?.message.startsWith(JSON.stringify(file)), err.message);
      assert.match(err.issues[0]?.message ?? '', message);
      assert.ok(!err.message.includes('AAAA'));
    });
  }

  it('refuses a directory and a file that is too large', async () => {
    const sub = join(dir, 'a-dir');
    await mkdir(sub);
    assert.match((await configError(readCaFile(sub))).message, /--ca-file: ".*a-dir": is not a regular file/);
    const big = join(dir, 'big.pem');
    await writeFile(big, Buffer.alloc(CA_FILE_MAX_BYTES + 1, 0x41));
    assert.match((await configError(readCaFile(big, 'SWITCHYARD_CA_FILE'))).message, /SWITCHYARD_CA_FILE: ".*big.pem": is too large \(1048577 bytes; at most 1048576\)/);
  });

  it('refuses an unreadable file', { skip: process.getuid?.() === 0 ? 'root reads every file' : false }, async () => {
    const file = join(dir, 'secret.pem');
    await writeFile(file, A);
    await chmod(file, 0o000);
    assert.match((await configError(readCaFile(file))).message, /permission denied/);
  });

  it('parses PEM text and refuses what is not certificates', () => {
    const ok = parsePemCertificates(`${A}${B}`);
    assert.ok(ok.ok && ok.pems.length === 2);
    const req = parsePemCertificates('-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----');
    assert.deepEqual(req, { ok: false, message: 'block #1 is a CERTIFICATE REQUEST, not a CERTIFICATE' });
  });

  it('builds one shared TLS context per trust set', () => {
    const env = {};
    const one = trustContext([A], env);
    assert.equal(trustContext([A], env), one);
    assert.notEqual(trustContext([B], env), one);
  });

  it('adds NODE_EXTRA_CA_CERTS, which Node itself stops adding once a CA is given, and ignores an unusable one', async () => {
    const extra = join(dir, 'extra.pem');
    await writeFile(extra, B);
    assert.deepEqual(nodeExtraCaCertificates({ NODE_EXTRA_CA_CERTS: extra }).map(fp), [fp(B)]);
    assert.deepEqual(nodeExtraCaCertificates({ NODE_EXTRA_CA_CERTS: join(dir, 'nope.pem') }), []);
    assert.deepEqual(nodeExtraCaCertificates({}), []);
  });

  it('loads the trust from the ca option first, then the CA file, else none', async () => {
    const file = join(dir, 'trust.pem');
    await writeFile(file, A);
    assert.equal(await loadTrust({}), undefined);
    assert.equal(await loadTrust({ caFile: null }), undefined);
    assert.ok(await loadTrust({ caFile: file }));
    assert.ok(await loadTrust({ ca: [A, B], caFile: join(dir, 'missing.pem') }), 'the ca option wins over the file');
    const err = await configError(loadTrust({ ca: 'not a certificate' }));
    assert.deepEqual(err.issues, [{ option: 'ca', message: 'not a PEM CA bundle: it holds no PEM certificate (expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)' }]);
    assert.match((await configError(loadTrust({ caFile: join(dir, 'missing.pem') }))).message, /--ca-file: ".*missing.pem": file not found/);
  });
});

describe('tls-failure', () => {
  const withCode = (code: string, message: string): Error => Object.assign(new Error(message), { code });

  it('names the TLS problem and the fix on the device', () => {
    assert.equal(
      describeTlsFailure(withCode('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain')),
      "TLS certificate verify failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain): the broker's certificate is not signed by a CA this agent trusts (add its CA to --ca-file)",
    );
    assert.match(describeTlsFailure(withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate')) ?? '', /not signed by a CA this agent trusts/);
    assert.match(
      describeTlsFailure(withCode('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: Host: localhost. is not in the cert's altnames: DNS:x")) ?? '',
      /^TLS host name check failed \(Hostname\/IP does not match certificate's altnames: .*\): the broker's host is not a name or IP address in its certificate$/,
    );
    assert.match(describeTlsFailure(withCode('CERT_HAS_EXPIRED', 'certificate has expired')) ?? '', /device clock/);
    assert.match(describeTlsFailure(withCode('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number')) ?? '', /^TLS handshake failed/);
  });

  it('leaves other errors to the caller', () => {
    assert.equal(describeTlsFailure(withCode('ECONNREFUSED', 'connect ECONNREFUSED')), null);
    assert.equal(describeTlsFailure(new Error('Connection refused: Not authorized')), null);
  });
});
