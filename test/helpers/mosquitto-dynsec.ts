/**
 * A throwaway Mosquitto broker with the dynamic-security plugin, hardened the way docs/security.md says:
 *
 * - `mosquitto_ctrl dynsec init <file> <admin> <password>` creates the plugin's file with one admin account (its role
 *   may use `$CONTROL/dynamic-security/#` and read everything);
 * - `allow_anonymous false`, no `password_file` (its accounts would be denied everything by the plugin anyway);
 * - default ACL access: deny `publishClientSend`, `publishClientReceive` (the plugin's default is allow) and
 *   `subscribe`; `unsubscribe` stays allowed;
 * - the Switchyard server's own account (`switchyard`, random password) with the role `switchyard-server` holding
 *   exactly `serverRoleAcls()` — every device topic and the plugin's control topics.
 *
 * `control()` runs dynsec commands as the admin (its own connection), e.g. to look at what Switchyard created.
 * Guard suites with `dynsecMissingReason()` (and `realServers(['mosquitto'])`).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { findExecutable, isRoot, systemUser, testTempRoot } from '../../scripts/test-servers.mjs';
import { DYNSEC_CONTROL_TOPIC, DYNSEC_RESPONSE_TOPIC, serverRoleAcls } from '../../packages/server/src/provisioning/dynsec-acl.ts';
import { realMode } from './real.ts';
import { startMosquitto, type TestMosquitto } from './mosquitto.ts';

/** The plugin (Debian's `mosquitto` package); override with SWITCHYARD_TEST_DYNSEC_PLUGIN. */
export const DYNSEC_PLUGIN = process.env.SWITCHYARD_TEST_DYNSEC_PLUGIN ?? '/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so';

export const SERVER_ROLE = 'switchyard-server';

/** Why a dynsec broker cannot run here, or null. Throws under SWITCHYARD_TEST_REAL=required when something is missing. */
export function dynsecMissingReason(): string | null {
  let reason: string | null = null;
  try {
    accessSync(DYNSEC_PLUGIN, constants.R_OK);
  } catch {
    reason = `the dynamic-security plugin ${DYNSEC_PLUGIN} is missing`;
  }
  if (reason === null && findExecutable('mosquitto_ctrl') === null) reason = 'mosquitto_ctrl not found';
  if (reason !== null && realMode() === 'required') throw new Error(`SWITCHYARD_TEST_REAL=required but ${reason} (install mosquitto)`);
  return reason === null ? null : `${reason} (install mosquitto)`;
}

export interface DynsecResponse {
  command: string;
  error?: string;
  data?: any;
}

export interface DynsecMosquitto extends TestMosquitto {
  /** The plugin's file (rewritten by Mosquitto on every change). */
  dynsecFile: string;
  admin: { username: string; password: string };
  /** The Switchyard server's account: register the broker with it (`provisioner: 'mosquitto-dynsec'`). */
  server: { username: string; password: string };
  /** Runs dynsec commands as the admin and returns one response per command. */
  control(commands: Array<Record<string, unknown>>): Promise<DynsecResponse[]>;
  /** Whether `username`/`password` (client id `clientId`, default the username) can connect now. */
  canLogin(username: string, password: string, clientId?: string): Promise<boolean>;
}

/** Connects the admin and answers control commands one message at a time. */
async function adminChannel(url: string, username: string, password: string): Promise<{ client: MqttClient; control: DynsecMosquitto['control'] }> {
  const client = await mqtt.connectAsync(url, { clientId: `dynsec-admin-${randomBytes(4).toString('hex')}`, username, password, reconnectPeriod: 0 });
  await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });
  const waiting = new Map<string, (r: DynsecResponse[]) => void>();
  client.on('message', (_topic, payload) => {
    const body = JSON.parse(payload.toString('utf8')) as { responses?: Array<DynsecResponse & { correlationData?: string }> };
    const tag = body.responses?.[0]?.correlationData;
    if (typeof tag === 'string') waiting.get(tag.split('.')[0]!)?.(body.responses!);
  });
  let seq = 0;
  const control: DynsecMosquitto['control'] = async (commands) => {
    const id = `admin${++seq}`;
    const answered = new Promise<DynsecResponse[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`no dynsec answer within 10 s to ${commands.map((c) => c.command).join(', ')}`));
      }, 10_000);
      waiting.set(id, (r) => {
        clearTimeout(timer);
        waiting.delete(id);
        resolve(r);
      });
    });
    const tagged = commands.map((c, i) => ({ ...c, correlationData: `${id}.${i}` }));
    await client.publishAsync(DYNSEC_CONTROL_TOPIC, JSON.stringify({ commands: tagged }), { qos: 1 });
    return (await answered).map(({ correlationData: _c, ...r }: DynsecResponse & { correlationData?: string }) => r);
  };
  return { client, control };
}

export async function startDynsecMosquitto(): Promise<DynsecMosquitto> {
  const ctrl = findExecutable('mosquitto_ctrl');
  if (ctrl === null) throw new Error('mosquitto_ctrl not found (install mosquitto)');
  const dir = await mkdtemp(join(testTempRoot(), 'sy-dynsec-'));
  const dynsecFile = join(dir, 'dynamic-security.json');
  const admin = { username: 'admin', password: randomBytes(12).toString('base64url') };
  const server = { username: 'switchyard', password: randomBytes(18).toString('base64url') };
  let broker: TestMosquitto | null = null;
  let adminClient: MqttClient | null = null;
  try {
    const init = spawnSync(ctrl, ['dynsec', 'init', dynsecFile, admin.username, admin.password], { encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`mosquitto_ctrl dynsec init failed: ${init.stderr || init.stdout}`);
    // Mosquitto (as user mosquitto when started as root) rewrites the file: `<file>.new`, then a rename in this dir.
    await chmod(dir, 0o700);
    const owner = isRoot() ? systemUser('mosquitto') : null;
    if (owner !== null) {
      await chown(dir, owner.uid, owner.gid);
      await chown(dynsecFile, owner.uid, owner.gid);
    }
    broker = await startMosquitto({
      // Later lines win: no anonymous clients at all (the generated config allows them by default).
      extraConfig: ['allow_anonymous false', `plugin ${DYNSEC_PLUGIN}`, `plugin_opt_config_file ${dynsecFile}`].join('\n'),
    });
    const channel = await adminChannel(broker.url, admin.username, admin.password);
    adminClient = channel.client;
    const setup = await channel.control([
      {
        command: 'setDefaultACLAccess',
        acls: [
          { acltype: 'publishClientSend', allow: false },
          { acltype: 'publishClientReceive', allow: false },
          { acltype: 'subscribe', allow: false },
          { acltype: 'unsubscribe', allow: true },
        ],
      },
      { command: 'createRole', rolename: SERVER_ROLE, textname: 'The Switchyard server', acls: serverRoleAcls() },
      { command: 'createClient', username: server.username, password: server.password, textname: 'The Switchyard server', roles: [{ rolename: SERVER_ROLE }] },
    ]);
    const failed = setup.filter((r) => r.error !== undefined);
    if (failed.length > 0) throw new Error(`dynsec set-up failed: ${JSON.stringify(failed)}`);
    const started = broker;
    const client = adminClient;
    return {
      ...started,
      dynsecFile,
      admin,
      server,
      control: channel.control,
      async canLogin(username, password, clientId = username) {
        try {
          const c = await mqtt.connectAsync(started.url, { clientId, username, password, reconnectPeriod: 0, connectTimeout: 5000 });
          await c.endAsync(true);
          return true;
        } catch {
          return false;
        }
      },
      async stop() {
        await client.endAsync(true).catch(() => undefined);
        await started.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await adminClient?.endAsync(true).catch(() => undefined);
    const log = broker ? await readFile(broker.logFile, 'utf8').catch(() => '') : '';
    await broker?.stop();
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}${log ? `\n--- mosquitto log ---\n${log.slice(-2000)}` : ''}`, { cause: err });
  }
}
