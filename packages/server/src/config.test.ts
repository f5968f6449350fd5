import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './config.ts';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

describe('loadConfig', () => {
  it('defaults to the embedded mode on 127.0.0.1:3000 with two brokers and three demo devices', () => {
    const c = loadConfig({});
    assert.deepEqual(c, {
      port: 3000,
      host: '127.0.0.1',
      databaseUrl: undefined,
      embedded: true,
      dataDir: path.resolve('.switchyard'),
      embeddedBrokers: [1883, 1884],
      adminToken: undefined,
      demoDevices: 3,
      secret: undefined,
      logLevel: 'info',
      pgPreparedStatements: 256,
      shadowBatchMax: 500,
      shadowQueueMax: 2000,
      deviceRateLimit: 20,
      deviceMaxInFlight: 10,
      migrationTimeoutSeconds: 120,
      migrationSweepMs: 5000,
      defaultChannel: 'shadow',
      commandTtlSeconds: 60,
      mqttNamespaces: ['iot', 'aws'],
    });
  });

  it('serves both MQTT namespaces by default; either can be turned off; a bad list is refused', () => {
    assert.deepEqual(loadConfig({ SWITCHYARD_MQTT_NAMESPACES: 'iot' }).mqttNamespaces, ['iot']);
    assert.deepEqual(loadConfig({ SWITCHYARD_MQTT_NAMESPACES: ' AWS ' }).mqttNamespaces, ['aws']);
    assert.deepEqual(loadConfig({ SWITCHYARD_MQTT_NAMESPACES: 'aws,iot,aws' }).mqttNamespaces, ['aws', 'iot']);
    for (const bad of ['iot,', 'azure', 'iot;aws', 'none']) {
      const err = configError({ SWITCHYARD_MQTT_NAMESPACES: bad });
      assert.equal(err.variable, 'SWITCHYARD_MQTT_NAMESPACES');
      assert.match(err.message, /comma-separated list of iot, aws/);
    }
  });

  it('reads the default assignment channel and the command TTL, and refuses bad ones', () => {
    const c = loadConfig({ SWITCHYARD_DEFAULT_CHANNEL: 'Command', SWITCHYARD_COMMAND_TTL_S: '5' });
    assert.equal(c.defaultChannel, 'command');
    assert.equal(c.commandTtlSeconds, 5);
    assert.match(configError({ SWITCHYARD_DEFAULT_CHANNEL: 'sms' }).message, /SWITCHYARD_DEFAULT_CHANNEL must be one of shadow, command, job, poll, got "sms"/);
    assert.equal(configError({ SWITCHYARD_COMMAND_TTL_S: '0' }).variable, 'SWITCHYARD_COMMAND_TTL_S');
  });

  it('reads every variable', () => {
    const c = loadConfig({
      PORT: '8080',
      HOST: '0.0.0.0',
      DATABASE_URL: 'postgres://u:p@db:5432/sy',
      SWITCHYARD_DATA_DIR: '/var/lib/sy',
      SWITCHYARD_EMBEDDED_BROKERS: '2883, 2884',
      SWITCHYARD_ADMIN_TOKEN: 'sya_0123456789abcdef',
      SWITCHYARD_DEMO_DEVICES: '0',
      SWITCHYARD_SECRET: 'a long passphrase here',
      LOG_LEVEL: 'DEBUG',
      SWITCHYARD_SHADOW_BATCH_MAX: '100',
    });
    assert.equal(c.port, 8080);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.databaseUrl, 'postgres://u:p@db:5432/sy');
    assert.equal(c.embedded, false);
    assert.equal(c.dataDir, '/var/lib/sy');
    assert.deepEqual(c.embeddedBrokers, [2883, 2884]);
    assert.equal(c.adminToken, 'sya_0123456789abcdef');
    assert.equal(c.demoDevices, 0);
    assert.equal(c.secret, 'a long passphrase here');
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.shadowBatchMax, 100);
  });

  it('reads the prepared-statement bound; 0 turns preparing off, a negative or non-integer is refused', () => {
    assert.equal(loadConfig({ SWITCHYARD_PG_PREPARED_STATEMENTS: '0' }).pgPreparedStatements, 0);
    assert.equal(loadConfig({ SWITCHYARD_PG_PREPARED_STATEMENTS: '32' }).pgPreparedStatements, 32);
    assert.throws(() => loadConfig({ SWITCHYARD_PG_PREPARED_STATEMENTS: '-1' }), /SWITCHYARD_PG_PREPARED_STATEMENTS/);
    assert.throws(() => loadConfig({ SWITCHYARD_PG_PREPARED_STATEMENTS: 'lots' }), /SWITCHYARD_PG_PREPARED_STATEMENTS/);
  });

  it('reads the per-device limits; 0 turns a limit off', () => {
    const c = loadConfig({ SWITCHYARD_DEVICE_RATE_LIMIT: '50', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0' });
    assert.equal(c.deviceRateLimit, 50);
    assert.equal(c.deviceMaxInFlight, 0);
    assert.equal(loadConfig({ SWITCHYARD_DEVICE_RATE_LIMIT: '0' }).deviceRateLimit, 0);
  });

  it('has no embedded brokers with DATABASE_URL unless asked, and none with "none"', () => {
    assert.deepEqual(loadConfig({ DATABASE_URL: 'postgresql://localhost/sy' }).embeddedBrokers, []);
    assert.deepEqual(loadConfig({ SWITCHYARD_EMBEDDED_BROKERS: 'none' }).embeddedBrokers, []);
    assert.deepEqual(loadConfig({ SWITCHYARD_EMBEDDED_BROKERS: 'NONE' }).embeddedBrokers, []);
  });

  it('treats empty variables as unset', () => {
    assert.equal(loadConfig({ PORT: '', LOG_LEVEL: ' ' }).port, 3000);
  });

  const bad: Array<[string, Record<string, string>, RegExp]> = [
    ['PORT', { PORT: 'abc' }, /^PORT must be a whole number from 0 to 65535, got "abc"$/],
    ['PORT', { PORT: '70000' }, /got "70000"/],
    ['PORT', { PORT: '-1' }, /got "-1"/],
    ['PORT', { PORT: '80.5' }, /got "80.5"/],
    ['HOST', { HOST: 'http://x' }, /^HOST must be an IP address or host name.*got "http:\/\/x"/],
    ['SWITCHYARD_EMBEDDED_BROKERS', { SWITCHYARD_EMBEDDED_BROKERS: '1883,abc' }, /bad item "abc"/],
    ['SWITCHYARD_EMBEDDED_BROKERS', { SWITCHYARD_EMBEDDED_BROKERS: '0' }, /from 1 to 65535/],
    ['SWITCHYARD_EMBEDDED_BROKERS', { SWITCHYARD_EMBEDDED_BROKERS: '1883,1883' }, /lists port 1883 twice/],
    ['SWITCHYARD_EMBEDDED_BROKERS', { SWITCHYARD_EMBEDDED_BROKERS: '1883,' }, /bad item ""/],
    ['SWITCHYARD_EMBEDDED_BROKERS', { PORT: '1883' }, /PORT already uses/],
    ['SWITCHYARD_DEMO_DEVICES', { SWITCHYARD_DEMO_DEVICES: 'many' }, /from 0 to 1000, got "many"/],
    ['SWITCHYARD_DEMO_DEVICES', { SWITCHYARD_DEMO_DEVICES: '1001' }, /got "1001"/],
    ['SWITCHYARD_SHADOW_BATCH_MAX', { SWITCHYARD_SHADOW_BATCH_MAX: '0' }, /from 1 to 100000, got "0"/],
    ['SWITCHYARD_DEVICE_RATE_LIMIT', { SWITCHYARD_DEVICE_RATE_LIMIT: '20/s' }, /^SWITCHYARD_DEVICE_RATE_LIMIT must be a whole number from 0 to 100000, got "20\/s"$/],
    ['SWITCHYARD_DEVICE_RATE_LIMIT', { SWITCHYARD_DEVICE_RATE_LIMIT: '-5' }, /got "-5"/],
    ['SWITCHYARD_DEVICE_RATE_LIMIT', { SWITCHYARD_DEVICE_RATE_LIMIT: '100001' }, /from 0 to 100000, got "100001"/],
    ['SWITCHYARD_DEVICE_MAX_IN_FLIGHT', { SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '2.5' }, /^SWITCHYARD_DEVICE_MAX_IN_FLIGHT must be a whole number from 0 to 100000, got "2.5"$/],
    ['SWITCHYARD_DEVICE_MAX_IN_FLIGHT', { SWITCHYARD_DEVICE_MAX_IN_FLIGHT: 'ten' }, /got "ten"/],
    ['LOG_LEVEL', { LOG_LEVEL: 'verbose' }, /^LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"$/],
    ['DATABASE_URL', { DATABASE_URL: 'mysql://root:topsecret@db/x' }, /postgres:\/\//],
    ['DATABASE_URL', { DATABASE_URL: 'not a url topsecret' }, /not a valid URL/],
    ['SWITCHYARD_ADMIN_TOKEN', { SWITCHYARD_ADMIN_TOKEN: 'topsecret' }, /at least 16 characters long, got 9 \(value not shown\)/],
    ['SWITCHYARD_ADMIN_TOKEN', { SWITCHYARD_ADMIN_TOKEN: 'topsecret topsecret' }, /whitespace/],
    ['SWITCHYARD_SECRET', { SWITCHYARD_SECRET: 'topsecret' }, /at least 16/],
  ];
  for (const [variable, env, message] of bad) {
    it(`refuses ${JSON.stringify(env)} naming ${variable}`, () => {
      const err = configError(env);
      assert.equal(err.variable, variable);
      assert.match(err.message, message);
      assert.ok(err.message.startsWith(variable), err.message);
      assert.ok(!err.message.includes('topsecret'), `a secret leaked into: ${err.message}`);
    });
  }
});
