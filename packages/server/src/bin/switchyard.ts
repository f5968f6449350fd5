/**
 * `switchyard` — the server and the admin CLI.
 *   switchyard serve [--demo]        run the server (embedded mode unless DATABASE_URL is set)
 *   switchyard brokers list          list brokers
 *   switchyard devices list          list devices (--broker, --limit)
 *   switchyard assign <uuid> <id>    move a device and follow the move to its end
 *   switchyard tokens create|list|revoke   API tokens with scopes (admin, operator, viewer)
 *   switchyard audit [filters]       the audit log, newest first
 * Output for humans goes to stdout here (bin/ is the one place allowed to print); logs go through pino.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { startSwitchyard } from '../serve.ts';
import { printBanner } from '../cli/banner.ts';
import { CliError, resolveClient, table, type ClientOptions } from '../cli/admin-client.ts';
import { assignCommand } from '../cli/assign-command.ts';
import { registerAuditCommand, registerTokenCommands } from '../cli/tokens-command.ts';
import { startDemoDevices, type DemoDevices } from '../cli/demo-devices.ts';

const program = new Command();
program.name('switchyard').description('Switchyard: move IoT devices between MQTT brokers, verified.').exitOverride();

program
  .command('serve')
  .description('run the Switchyard server (embedded PGlite + two Aedes brokers unless DATABASE_URL is set)')
  .option('--demo', 'embedded mode: also run demo devices (SWITCHYARD_DEMO_DEVICES, default 3) and print a guided tour', false)
  .action(async (o: { demo: boolean }) => {
    const config = loadConfig();
    const log = createLogger({ level: config.logLevel });
    // Last line of defence: a promise rejection nobody handled is a bug, but it must not take down a server
    // that serves a whole fleet. Logged loudly with its stack; every known path handles its own errors.
    process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection (a bug); the server keeps running'));
    const sy = await startSwitchyard({ config, log });
    let demo: DemoDevices | null = null;
    if (o.demo && config.embedded) demo = await startDemoDevices(sy, { count: config.demoDevices, dataDir: config.dataDir, log });
    printBanner(sy, config, { demo: o.demo, demoDevices: demo?.uuids ?? [] });
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      (demo ? demo.stop() : Promise.resolve())
        .then(() => sy.stop())
        .then(
        () => process.exit(0),
        (err: unknown) => {
          log.error({ err }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => shutdown('SIGINT'));
    process.on('SIGTERM', () => shutdown('SIGTERM'));
  });

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const withClient = (cmd: Command): Command =>
  cmd.option('--api-url <url>', 'server URL (env SWITCHYARD_API_URL, default http://127.0.0.1:3000)').option('--token <token>', 'admin token (env SWITCHYARD_ADMIN_TOKEN, else <data dir>/admin-token)');

const brokers = program.command('brokers').description('broker registry');
withClient(brokers.command('list').description('list registered brokers')).action(async (o: ClientOptions) => {
  const client = await resolveClient(o);
  const res = await client.request<{ items: Array<Record<string, unknown>> }>('GET', '/brokers');
  say(table(res.items, ['id', 'name', 'url', 'status', 'provisioner', 'protocolVersion']));
});

const devices = program.command('devices').description('device registry');
withClient(devices.command('list').description('list devices'))
  .option('--broker <id>', 'only devices assigned to this broker')
  .option('--limit <n>', 'at most this many (1-500)', '50')
  .action(async (o: ClientOptions & { broker?: string; limit: string }) => {
    if (!/^[1-9][0-9]*$/.test(o.limit) || Number(o.limit) > 500) throw new CliError(`--limit must be 1-500, got ${JSON.stringify(o.limit)}`, 2);
    if (o.broker !== undefined && !/^[1-9][0-9]{0,9}$/.test(o.broker)) throw new CliError(`--broker must be a broker id, got ${JSON.stringify(o.broker)}`, 2);
    const client = await resolveClient(o);
    const q = new URLSearchParams({ limit: o.limit, ...(o.broker ? { brokerId: o.broker } : {}) });
    const res = await client.request<{ items: Array<Record<string, unknown>>; total: number }>('GET', `/devices?${q}`);
    say(table(res.items, ['uuid', 'name', 'brokerId', 'connectedBrokerId', 'online', 'lastSeenAt']));
    say(`${res.items.length} of ${res.total}`);
  });

withClient(program.command('assign <uuid> <brokerId>').description('assign a device to a broker and follow the move until it completes or fails'))
  .option('--channel <channel>', 'how the device is told (shadow)')
  .option('--no-wait', 'return after the assignment is committed')
  .option('--timeout <seconds>', 'stop following after this long', '150')
  .action(async (uuid: string, brokerId: string, o: ClientOptions & { channel?: string; wait: boolean; timeout: string }) => {
    if (!/^[1-9][0-9]*$/.test(o.timeout)) throw new CliError(`--timeout must be a positive number of seconds, got ${JSON.stringify(o.timeout)}`, 2);
    const client = await resolveClient(o);
    const code = await assignCommand(client, uuid, brokerId, { ...(o.channel ? { channel: o.channel } : {}), wait: o.wait, timeoutS: Number(o.timeout) }, say);
    process.exitCode = code;
  });

registerTokenCommands(program, withClient, say);
registerAuditCommand(program, withClient, say);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  // Usage errors (unknown command or option, missing argument) exit 2 like every bad flag; --help/--version exit 0.
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  if (err instanceof CliError) {
    process.stderr.write(`switchyard: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`switchyard: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`switchyard: ${(err as Error).message}\n`);
  process.exit(1);
}
