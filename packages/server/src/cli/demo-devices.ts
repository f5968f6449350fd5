/**
 * Demo devices for `npm start` (`switchyard serve --demo`, embedded mode): real agents, in this process,
 * over TCP to the embedded brokers — the same code as `switchyard-agent`. Their tokens are kept in
 * `<dataDir>/demo-devices.json` (mode 0600) so a restart brings the same devices back on the broker they
 * last moved to (each agent persists its own state under `<dataDir>/agents/<uuid>`).
 */
import { mkdir, readFile, writeFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { createAgent, parseAgentConfig, type Agent } from '@switchyard/agent';
import type { Logger } from '../log.ts';
import type { Switchyard } from '../serve.ts';
import { generateToken, hashToken, DEVICE_TOKEN_PREFIX } from '../auth/tokens.ts';
import { insertDevice } from '../devices/devices.store.ts';

export interface DemoDevices {
  uuids: string[];
  stop(): Promise<void>;
}

async function loadTokens(file: string): Promise<Record<string, string>> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null) return {};
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  } catch {
    return {}; // first start (or an unreadable file): tokens are re-issued below
  }
}

export async function startDemoDevices(sy: Switchyard, o: { count: number; dataDir: string; log: Logger }): Promise<DemoDevices> {
  const log = o.log.child({ component: 'demo' });
  const home = sy.embeddedBrokers[0];
  if (o.count === 0 || !home) return { uuids: [], async stop() {} };
  const file = path.join(o.dataDir, 'demo-devices.json');
  const tokens = await loadTokens(file);
  const uuids = Array.from({ length: o.count }, (_, i) => `demo-${i + 1}`);
  for (const uuid of uuids) {
    const known = tokens[uuid];
    const { rows } = await sy.db.query<{ token_hash: string }>('SELECT token_hash FROM devices WHERE uuid = $1', [uuid]);
    if (rows[0] && known && hashToken(known) === rows[0].token_hash) continue;
    const token = generateToken(DEVICE_TOKEN_PREFIX);
    if (rows[0]) {
      await sy.db.query('UPDATE devices SET token_hash = $2, updated_at = now() WHERE uuid = $1', [uuid, hashToken(token)]);
    } else {
      await insertDevice(sy.db, { uuid, name: `Demo device ${uuid.slice(5)}`, brokerId: home.id, tokenHash: hashToken(token) });
    }
    tokens[uuid] = token;
  }
  await writeFile(`${file}.tmp`, JSON.stringify(tokens, null, 2), { mode: 0o600 });
  await rename(`${file}.tmp`, file);

  const agents: Agent[] = [];
  for (const uuid of uuids) {
    const stateDir = path.join(o.dataDir, 'agents', uuid);
    await mkdir(stateDir, { recursive: true, mode: 0o700 });
    const config = parseAgentConfig(['--api-url', sy.url, '--device-uuid', uuid, '--state-dir', stateDir], { SWITCHYARD_DEVICE_TOKEN: tokens[uuid]! });
    const agent = createAgent({ config, log: log.child({ deviceUuid: uuid }) });
    agent.on('migration:state', (e: { from: string; to: string; cause: string; brokerId?: number; targetBrokerId?: number }) =>
      log.info({ deviceUuid: uuid, from: e.from, to: e.to, cause: e.cause, brokerId: e.brokerId, targetBrokerId: e.targetBrokerId }, `demo device ${uuid}: ${e.from} → ${e.to}`),
    );
    agents.push(agent);
    agent.start().catch((err: unknown) => log.error({ err, deviceUuid: uuid }, 'demo device could not start'));
  }
  return {
    uuids,
    async stop() {
      await Promise.all(agents.map((a) => a.stop().catch((err: unknown) => log.warn({ err }, 'demo device did not stop cleanly'))));
    },
  };
}
