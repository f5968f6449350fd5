import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { AgentConfigError, agentUsage, AGENT_OPTIONS, parseAgentConfig, type AgentConfig } from './config.ts';

const TOKEN = 's3cr3t-T0ken_value';

const baseEnv = {
  SWITCHYARD_API_URL: 'http://127.0.0.1:3000',
  SWITCHYARD_DEVICE_UUID: 'dev-1',
  SWITCHYARD_DEVICE_TOKEN: TOKEN,
};

/** The error thrown by parseAgentConfig, asserted to be an AgentConfigError. */
function errorOf(argv: string[], env: Record<string, string | undefined> = baseEnv): AgentConfigError {
  try {
    parseAgentConfig(argv, env);
  } catch (err) {
    assert.ok(err instanceof AgentConfigError, String(err));
    return err;
  }
  assert.fail('expected an AgentConfigError');
}

describe('agent config', () => {
  it('reads the environment and fills the defaults', () => {
    const c = parseAgentConfig([], baseEnv);
    assert.deepEqual(c, {
      apiUrl: 'http://127.0.0.1:3000',
      deviceUuid: 'dev-1',
      deviceToken: TOKEN,
      stateDir: join('.switchyard', 'agents', 'dev-1'),
      heartbeatMs: 0,
      channels: ['shadow', 'command', 'job', 'poll'],
      pollIntervalMs: 60000,
      longPollS: 0,
      fallbackAfterMs: 30000,
      logLevel: 'info',
      caFile: null,
    } satisfies AgentConfig);
  });

  it('prefers flags over the environment, in both --flag value and --flag=value forms', () => {
    const c = parseAgentConfig(
      [
        '--api-url=https://switchyard.example.com/base/',
        '--device-uuid',
        'dev-2',
        '--device-token',
        'other-token',
        '--state-dir',
        '/var/lib/switchyard',
        '--heartbeat-ms',
        '5000',
        '--channels',
        ' poll , shadow,poll',
        '--poll-interval-ms=1000',
        '--long-poll-s',
        '30',
        '--fallback-after-ms',
        '0',
        '--log-level',
        'debug',
        '--ca-file',
        '/etc/switchyard/ca.pem',
      ],
      { ...baseEnv, SWITCHYARD_HEARTBEAT_MS: '100', SWITCHYARD_STATE_DIR: '/tmp/x', SWITCHYARD_CA_FILE: '/env/ca.pem' },
    );
    assert.deepEqual(c, {
      apiUrl: 'https://switchyard.example.com/base',
      deviceUuid: 'dev-2',
      deviceToken: 'other-token',
      stateDir: '/var/lib/switchyard',
      heartbeatMs: 5000,
      channels: ['shadow', 'poll'],
      pollIntervalMs: 1000,
      longPollS: 30,
      fallbackAfterMs: 0,
      logLevel: 'debug',
      caFile: '/etc/switchyard/ca.pem',
    } satisfies AgentConfig);
  });

  it('reads the §6 options and the log level from the environment too', () => {
    const c = parseAgentConfig([], {
      ...baseEnv,
      SWITCHYARD_STATE_DIR: '/data',
      SWITCHYARD_HEARTBEAT_MS: '250',
      SWITCHYARD_CHANNELS: 'command',
      SWITCHYARD_POLL_INTERVAL_MS: '2000',
      SWITCHYARD_LONG_POLL_S: '20',
      SWITCHYARD_FALLBACK_AFTER_MS: '10000',
      LOG_LEVEL: 'warn',
      SWITCHYARD_CA_FILE: 'certs/broker-ca.pem',
    });
    assert.equal(c.stateDir, '/data');
    assert.equal(c.heartbeatMs, 250);
    assert.deepEqual(c.channels, ['command']);
    assert.equal(c.pollIntervalMs, 2000);
    assert.equal(c.longPollS, 20);
    assert.equal(c.fallbackAfterMs, 10000);
    assert.equal(c.logLevel, 'warn');
    assert.equal(c.caFile, 'certs/broker-ca.pem');
  });

  it('treats an empty environment variable as unset', () => {
    const c = parseAgentConfig([], { ...baseEnv, SWITCHYARD_HEARTBEAT_MS: '', SWITCHYARD_CHANNELS: '', SWITCHYARD_CA_FILE: '' });
    assert.equal(c.heartbeatMs, 0);
    assert.equal(c.channels.length, 4);
    assert.equal(c.caFile, null);
  });

  it('names every missing required option with its variable', () => {
    const err = errorOf([], {});
    assert.deepEqual(err.issues, [
      { option: '--api-url', message: 'required (or set SWITCHYARD_API_URL)' },
      { option: '--device-uuid', message: 'required (or set SWITCHYARD_DEVICE_UUID)' },
      { option: '--device-token', message: 'required (or set SWITCHYARD_DEVICE_TOKEN)' },
    ]);
    assert.equal(err.code, 'AGENT_CONFIG_INVALID');
    assert.match(err.message, /^invalid agent configuration: --api-url: required/);
  });

  const bad: { name: string; argv: string[]; env?: Record<string, string>; option: string; message: RegExp }[] = [
    { name: 'non-numeric heartbeat', argv: ['--heartbeat-ms', 'abc'], option: '--heartbeat-ms', message: /expected a non-negative integer \(milliseconds\), got "abc"/ },
    { name: 'fractional heartbeat', argv: ['--heartbeat-ms=1.5'], option: '--heartbeat-ms', message: /got "1\.5"/ },
    { name: 'exponent heartbeat', argv: ['--heartbeat-ms=1e3'], option: '--heartbeat-ms', message: /got "1e3"/ },
    { name: 'negative heartbeat', argv: ['--heartbeat-ms=-5'], option: '--heartbeat-ms', message: /got "-5"/ },
    { name: 'too small heartbeat', argv: ['--heartbeat-ms', '5'], option: '--heartbeat-ms', message: /expected 0 \(off\) or 10–86400000 ms, got 5/ },
    { name: 'env heartbeat', argv: [], env: { SWITCHYARD_HEARTBEAT_MS: ' 5' }, option: 'SWITCHYARD_HEARTBEAT_MS', message: /got " 5"/ },
    { name: 'poll interval too small', argv: ['--poll-interval-ms', '99'], option: '--poll-interval-ms', message: /expected 100–86400000 ms, got 99/ },
    { name: 'long poll too long', argv: ['--long-poll-s', '61'], option: '--long-poll-s', message: /expected 0–60 s, got 61/ },
    { name: 'huge number', argv: ['--fallback-after-ms', '99999999999999999999'], option: '--fallback-after-ms', message: /got "99999999999999999999"/ },
    { name: 'unknown channel', argv: ['--channels', 'shadow,mqtt'], option: '--channels', message: /unknown channel "mqtt"; expected a comma-separated list of shadow,command,job,poll/ },
    { name: 'empty channel item', argv: ['--channels', 'shadow,,job'], option: '--channels', message: /unknown channel an empty item/ },
    { name: 'no channels', argv: ['--channels', ' , '], option: '--channels', message: /expected at least one of/ },
    { name: 'bad uuid', argv: ['--device-uuid', 'dev/1'], option: '--device-uuid', message: /expected 1–128 characters of \[A-Za-z0-9:_-\], got "dev\/1"/ },
    { name: 'wildcard uuid', argv: [], env: { SWITCHYARD_DEVICE_UUID: 'dev+' }, option: 'SWITCHYARD_DEVICE_UUID', message: /got "dev\+"/ },
    { name: 'not a URL', argv: ['--api-url', 'localhost:3000'], option: '--api-url', message: /expected an http or https URL, got "localhost"/ },
    { name: 'garbage URL', argv: ['--api-url', 'not a url'], option: '--api-url', message: /expected an http\(s\) URL such as http:\/\/127\.0\.0\.1:3000, got "not a url"/ },
    { name: 'mqtt URL', argv: ['--api-url', 'mqtt://127.0.0.1:1883'], option: '--api-url', message: /expected an http or https URL, got "mqtt"/ },
    { name: 'URL with query', argv: ['--api-url', 'http://h/?x=1'], option: '--api-url', message: /must not have a query or fragment/ },
    { name: 'bad log level', argv: ['--log-level', 'verbose'], option: '--log-level', message: /expected one of fatal\|error\|warn\|info\|debug\|trace\|silent, got "verbose"/ },
    { name: 'empty state dir flag', argv: ['--state-dir='], option: '--state-dir', message: /expected a directory path, got ""/ },
    { name: 'empty CA file flag', argv: ['--ca-file='], option: '--ca-file', message: /expected a file path, got ""/ },
    { name: 'CA file path with a newline', argv: [], env: { SWITCHYARD_CA_FILE: '/etc/ca.pem\n' }, option: 'SWITCHYARD_CA_FILE', message: /expected a file path, got "\/etc\/ca\.pem\\n"/ },
  ];
  for (const c of bad) {
    it(`rejects ${c.name} naming ${c.option} and the value`, () => {
      const err = errorOf(c.argv, { ...baseEnv, ...c.env });
      assert.equal(err.issues.length, 1, JSON.stringify(err.issues));
      assert.equal(err.issues[0]?.option, c.option);
      assert.match(err.issues[0]?.message ?? '', c.message);
    });
  }

  it('reports every bad option at once', () => {
    const err = errorOf(['--heartbeat-ms', 'x', '--long-poll-s=-1', '--channels', 'nope']);
    assert.deepEqual(
      err.issues.map((i) => i.option),
      ['--heartbeat-ms', '--long-poll-s', '--channels'],
    );
  });

  it('never repeats the device token in an error', () => {
    const cases: [string[], Record<string, string>][] = [
      [['--device-token', `${TOKEN} with space`], {}],
      [[`--device-token=${TOKEN}\u0001`], {}],
      [['--device-token', 'x'.repeat(5000)], {}],
      [['--device-token='], {}],
      [['--device-tokn', TOKEN], {}],
      [[`--device-tokn=${TOKEN}`], {}],
      [['--device-uuid', 'dev-1', TOKEN], {}],
      [['--', TOKEN], {}],
      [['--api-url', `http://user:${TOKEN}@host/`], {}],
      [['--api-url', `http//user:${TOKEN}@host/`], {}],
      [[], { SWITCHYARD_DEVICE_TOKEN: `${TOKEN}\n` }],
    ];
    for (const [argv, env] of cases) {
      const err = errorOf(argv, { ...baseEnv, ...env });
      assert.ok(!err.message.includes(TOKEN), `token leaked for ${JSON.stringify(argv)}: ${err.message}`);
      assert.ok(!JSON.stringify(err.issues).includes(TOKEN));
    }
  });

  it('explains a token that is empty, too long or has whitespace, by its flag', () => {
    assert.deepEqual(errorOf(['--device-token=']).issues, [{ option: '--device-token', message: 'must not be empty' }]);
    assert.match(errorOf(['--device-token', 'x'.repeat(5000)]).issues[0]?.message ?? '', /too long \(5000 characters; at most 4096\)/);
    assert.deepEqual(errorOf([], { ...baseEnv, SWITCHYARD_DEVICE_TOKEN: 'a b' }).issues, [
      { option: 'SWITCHYARD_DEVICE_TOKEN', message: 'must not contain whitespace or control characters' },
    ]);
  });

  it('rejects unknown flags, flags without a value and positional arguments', () => {
    assert.match(errorOf(['--verbose']).message, /--verbose: unknown option; known options: --api-url/);
    assert.deepEqual(errorOf(['--heartbeat-ms']).issues, [{ option: '--heartbeat-ms', message: 'missing value' }]);
    assert.match(errorOf(['--api-url', '--device-uuid', 'x']).issues[0]?.message ?? '', /missing value \(the next argument starts with '-'/);
    assert.deepEqual(errorOf(['extra']).issues, [{ option: 'arguments', message: 'unexpected positional argument #1; every option is a --flag' }]);
  });

  it('lists every option in the usage text', () => {
    const usage = agentUsage();
    for (const o of AGENT_OPTIONS) {
      assert.ok(usage.includes(`--${o.flag}`), o.flag);
      assert.ok(usage.includes(o.env), o.env);
    }
  });
});
