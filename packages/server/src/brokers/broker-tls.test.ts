import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import { brokerTlsOptions, CA_CERT_MAX_COUNT, CA_CERT_MAX_LENGTH, describeBrokerTlsFailure, parseCaCert, tlsFailureKind } from './broker-tls.ts';

// Real certificates without openssl: Node's bundled roots.
const [certA, certB] = [...rootCertificates].sort((a, b) => Date.parse(new X509Certificate(b).validTo) - Date.parse(new X509Certificate(a).validTo));
const A = certA!;
const B = certB!;
const NOW = Date.parse('2026-01-01T00:00:00Z');

const withCode = (code: string, message: string): Error => Object.assign(new Error(message), { code });

describe('broker-tls parseCaCert', () => {
  it('accepts one certificate and answers it re-encoded', () => {
    const r = parseCaCert(A, NOW);
    assert.ok(r.ok);
    assert.equal(r.pems.length, 1);
    assert.equal(new X509Certificate(r.pem).fingerprint256, new X509Certificate(A).fingerprint256);
  });

  it('accepts a bundle with comment lines around the blocks, as openssl writes them', () => {
    const r = parseCaCert(`subject=CN = first\n${A}\n# second\r\n${B.replace(/\n/g, '\r\n')}\n`, NOW);
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(
      r.pems.map((p) => new X509Certificate(p).fingerprint256),
      [A, B].map((p) => new X509Certificate(p).fingerprint256),
    );
    assert.ok(!r.pem.includes('subject=') && !r.pem.includes('# second'));
  });

  const bad: Array<[string, string, RegExp]> = [
    ['text without a PEM block', 'hello', /holds no PEM certificate/],
    ['a marker without an end', '-----BEGIN CERTIFICATE-----\nMIIB', /holds no PEM certificate/],
    ['a block that is not DER', '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZmFrZQ==\n-----END CERTIFICATE-----\n', /certificate #1 cannot be parsed/],
    ['a bad second certificate', `${A}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n`, /certificate #2 cannot be parsed/],
    ['a private key', `${A}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`, /block #2 is a private key \(PRIVATE KEY\); caCert holds certificates only/],
    ['an RSA private key', '-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n', /block #1 is a private key/],
    ['a certificate request', '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n', /block #1 is a CERTIFICATE REQUEST, not a CERTIFICATE/],
    ['too many certificates', A.repeat(CA_CERT_MAX_COUNT + 1), new RegExp(`more than ${CA_CERT_MAX_COUNT} certificates`)],
    ['too long a text', 'x'.repeat(CA_CERT_MAX_LENGTH + 1), /too long \(65537 characters; at most 65536\)/],
  ];
  for (const [what, text, message] of bad) {
    it(`refuses ${what} with a precise message`, () => {
      const r = parseCaCert(text, NOW);
      assert.ok(!r.ok);
      assert.match(r.message, message);
      assert.ok(!r.message.includes('AAAA') && !r.message.includes('MIIB'), 'the message never repeats the input');
    });
  }

  it('refuses an expired certificate, naming it and its end date', () => {
    const cert = new X509Certificate(A);
    const r = parseCaCert(A, Date.parse(cert.validTo) + 1000);
    assert.ok(!r.ok);
    assert.match(r.message, /^certificate #1 \(CN=.+\) expired on \d{4}-\d\d-\d\dT/);
  });
});

describe('broker-tls describeBrokerTlsFailure', () => {
  it('explains an untrusted certificate, with a hint that depends on caCert', () => {
    const err = withCode('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed certificate in certificate chain');
    assert.equal(
      describeBrokerTlsFailure(err, true),
      "TLS certificate verify failed (SELF_SIGNED_CERT_IN_CHAIN: self-signed certificate in certificate chain): the broker's certificate is not signed by the broker record's caCert",
    );
    assert.match(describeBrokerTlsFailure(err, false) ?? '', /not signed by a CA in Node's root store; set the broker record's caCert/);
    assert.equal(tlsFailureKind(withCode('UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'unable to verify the first certificate')), 'untrusted');
  });

  it('explains a host name mismatch', () => {
    const err = withCode('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: Host: localhost. is not in the cert's altnames: DNS:broker.example.test");
    assert.match(describeBrokerTlsFailure(err, true) ?? '', /^TLS host name check failed \(Hostname\/IP does not match certificate's altnames: .*\): the broker record's host must be/);
  });

  it('names expiry, other verification failures and handshake failures', () => {
    assert.match(describeBrokerTlsFailure(withCode('CERT_HAS_EXPIRED', 'certificate has expired'), true) ?? '', /CERT_HAS_EXPIRED.*clock/);
    assert.match(describeBrokerTlsFailure(withCode('INVALID_PURPOSE', 'unsuitable certificate purpose'), true) ?? '', /^TLS certificate verify failed \(INVALID_PURPOSE/);
    assert.match(describeBrokerTlsFailure(withCode('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), true) ?? '', /^TLS handshake failed .*TLS listener/);
  });

  it('leaves other errors alone', () => {
    assert.equal(describeBrokerTlsFailure(withCode('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:1'), true), null);
    assert.equal(describeBrokerTlsFailure(new Error('Connection refused: Not authorized'), true), null);
    assert.equal(describeBrokerTlsFailure(null, true), null);
  });
});

describe('broker-tls brokerTlsOptions', () => {
  it('adds nothing for plain mqtt and ws', () => {
    assert.deepEqual(brokerTlsOptions({ id: 1, protocol: 'mqtt', host: 'broker', caCert: A }), {});
    assert.deepEqual(brokerTlsOptions({ id: 1, protocol: 'ws', host: 'broker' }), {});
  });

  it('always verifies, names the host for SNI and the name check, and trusts only the record’s CA when it has one', () => {
    assert.deepEqual(brokerTlsOptions({ id: 1, protocol: 'mqtts', host: 'mqtt.example.com' }), { rejectUnauthorized: true, servername: 'mqtt.example.com' });
    const withCa = brokerTlsOptions({ id: 1, protocol: 'wss', host: 'mqtt.example.com', caCert: `${A}${B}` });
    assert.ok(typeof withCa !== 'string');
    assert.equal(withCa.rejectUnauthorized, true);
    assert.deepEqual(withCa.ca?.map((p) => new X509Certificate(p).fingerprint256), [A, B].map((p) => new X509Certificate(p).fingerprint256));
  });

  it('sends no servername for an IP host (matched against the IP SANs)', () => {
    assert.deepEqual(brokerTlsOptions({ id: 1, protocol: 'mqtts', host: '127.0.0.1' }), { rejectUnauthorized: true });
    assert.deepEqual(brokerTlsOptions({ id: 1, protocol: 'mqtts', host: '::1' }), { rejectUnauthorized: true });
  });

  it('answers why when a stored caCert is unusable', () => {
    assert.equal(
      brokerTlsOptions({ id: 7, protocol: 'mqtts', host: 'h', caCert: 'garbage' }),
      "the broker record's caCert is unusable: it holds no PEM certificate (expected -----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----); fix it with PATCH /api/v1/brokers/7",
    );
  });
});
