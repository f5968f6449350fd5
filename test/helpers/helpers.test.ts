import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import pg from 'pg';
import { startMosquitto, type TestMosquitto } from './mosquitto.ts';
import { freePort } from './ports.ts';
import { startPostgres, type TestPostgres } from './postgres.ts';
import { realServers } from './real.ts';
import { onceEvent, waitFor } from './wait.ts';

describe('freePort', () => {
  it('returns a port that can be bound on 127.0.0.1', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    const { createServer } = await import('node:net');
    const server = createServer();
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    server.close();
    await once(server, 'close');
  });
});

describe('waitFor', () => {
  it('resolves with the first truthy value', async () => {
    let calls = 0;
    const value = await waitFor(() => (++calls >= 3 ? `done after ${calls}` : null), { intervalMs: 1 });
    assert.equal(value, 'done after 3');
  });

  it('rejects with the message on timeout', async () => {
    await assert.rejects(waitFor(() => false, { timeoutMs: 30, intervalMs: 5, message: 'the moon' }), /waiting for the moon/);
  });
});

const pgReal = realServers(['postgres']);

describe('startPostgres', { skip: pgReal.skip }, () => {
  let db: TestPostgres | undefined;
  let pool: pg.Pool | undefined;

  before(async () => {
    db = await startPostgres();
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
  });

  after(async () => {
    await pool?.end();
    await db?.stop();
  });

  it('gives a fresh database that answers queries', async () => {
    const { rows } = await pool!.query<{ one: number; db: string }>('select 1 as one, current_database() as db');
    assert.equal(rows[0]?.one, 1);
    assert.match(rows[0]?.db ?? '', /^sy_[0-9a-f]{12}$/);
  });

  it('gives each caller its own database and drops it on stop, even with open connections', async () => {
    const other = await startPostgres();
    const client = new pg.Client({ connectionString: other.url });
    // The server terminates the session and then the socket closes: pg emits 'error' for each.
    const errors: Error[] = [];
    client.on('error', (err) => errors.push(err));
    await client.connect();
    const { rows } = await client.query<{ db: string }>('select current_database() as db');
    const name = rows[0]?.db;
    assert.notEqual(name, new URL(db!.url).pathname.slice(1));
    await other.stop();
    await waitFor(() => errors.length > 0, { message: 'the open connection to be terminated' });
    await client.end();
    const exists = await pool!.query('select 1 from pg_database where datname = $1', [name]);
    assert.equal(exists.rowCount, 0);
  });
});

const mqReal = realServers(['mosquitto']);

describe('startMosquitto', { skip: mqReal.skip }, () => {
  let broker: TestMosquitto | undefined;

  before(async () => {
    broker = await startMosquitto();
  });

  after(async () => {
    await broker?.stop();
  });

  it('round-trips a QoS 1 message with mqtt.js', async () => {
    const sub = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, clientId: 'helpers-sub' });
    const pub = await mqtt.connectAsync(broker!.url, { reconnectPeriod: 0, clientId: 'helpers-pub' });
    try {
      await sub.subscribeAsync('sy/test/+', { qos: 1 });
      const received = onceEvent(sub, 'message');
      await pub.publishAsync('sy/test/a', 'hello', { qos: 1 });
      const [topic, payload] = (await received) as [string, Buffer];
      assert.equal(topic, 'sy/test/a');
      assert.equal(payload.toString(), 'hello');
    } finally {
      await Promise.all([sub.endAsync(), pub.endAsync()]);
    }
  });

  it('logs to logFile', async () => {
    const { readFile } = await import('node:fs/promises');
    await waitFor(async () => (await readFile(broker!.logFile, 'utf8')).includes('helpers-sub'), {
      message: 'the connection of helpers-sub in the broker log',
    });
  });

  it('refuses anonymous clients and accepts listed users when users are given', async () => {
    const secured = await startMosquitto({ users: [{ username: 'device-1', password: 's3cret' }] });
    try {
      await assert.rejects(mqtt.connectAsync(secured.url, { reconnectPeriod: 0 }), /Not authorized|Bad username/i);
      const client = await mqtt.connectAsync(secured.url, { reconnectPeriod: 0, username: 'device-1', password: 's3cret' });
      await client.endAsync();
    } finally {
      await secured.stop();
    }
  });

  it('kill() drops connections at once and stop() still cleans up', async () => {
    const doomed = await startMosquitto();
    const client = await mqtt.connectAsync(doomed.url, { reconnectPeriod: 0 });
    const closed = onceEvent(client, 'close');
    doomed.kill();
    await closed;
    await client.endAsync(true);
    await doomed.stop();
    const { existsSync } = await import('node:fs');
    assert.equal(existsSync(doomed.configDir), false);
  });

  it('reports the log tail when the broker cannot start', async () => {
    await assert.rejects(startMosquitto({ extraConfig: 'no_such_option 1' }), /mosquitto exited with code/);
  });
});

const cliReal = realServers(['mosquitto', 'mosquitto-clients']);

describe('mosquitto command-line clients', { skip: cliReal.skip }, () => {
  let broker: TestMosquitto | undefined;

  before(async () => {
    broker = await startMosquitto();
  });

  after(async () => {
    await broker?.stop();
  });

  it('round-trips a message with mosquitto_pub and mosquitto_sub', async () => {
    const port = String(broker!.port);
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'sy/cli', '-C', '1', '-W', '10', '-q', '1', '-i', 'cli-sub'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    sub.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    const exited = once(sub, 'exit');
    // Publish only once the broker has seen the subscriber's session (event-driven would need $SYS; the log is enough).
    const { readFile } = await import('node:fs/promises');
    await waitFor(async () => /cli-sub/.test(await readFile(broker!.logFile, 'utf8')), { message: 'mosquitto_sub to connect' });
    await waitFor(
      async () => {
        const pub = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-t', 'sy/cli', '-m', 'from-cli', '-q', '1']);
        const [code] = await once(pub, 'exit');
        return code === 0 && out.includes('from-cli');
      },
      { message: 'mosquitto_sub to print the message', intervalMs: 100 },
    );
    const [code] = await exited;
    assert.equal(code, 0);
    assert.equal(out.trim(), 'from-cli');
  });
});
