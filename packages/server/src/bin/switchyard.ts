/**
 * `switchyard` — the server and the admin CLI.
 *   switchyard serve [--demo]   run the server (embedded mode unless DATABASE_URL is set)
 * Output for humans goes to stdout here (bin/ is the one place allowed to print); logs go through pino.
 */
import { Command, CommanderError } from 'commander';
import { ConfigError, loadConfig } from '../config.ts';
import { createLogger } from '../log.ts';
import { startSwitchyard } from '../serve.ts';
import { printBanner } from '../cli/banner.ts';

const program = new Command();
program.name('switchyard').description('Switchyard: move IoT devices between MQTT brokers, verified.').exitOverride();

program
  .command('serve')
  .description('run the Switchyard server (embedded PGlite + two Aedes brokers unless DATABASE_URL is set)')
  .option('--demo', 'also print a guided tour for the embedded mode', false)
  .action(async (o: { demo: boolean }) => {
    const config = loadConfig();
    const log = createLogger({ level: config.logLevel });
    const sy = await startSwitchyard({ config, log });
    printBanner(sy, config, { demo: o.demo });
    let stopping = false;
    const shutdown = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutting down');
      sy.stop().then(
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

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode);
  if (err instanceof ConfigError) {
    process.stderr.write(`switchyard: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`switchyard: ${(err as Error).message}\n`);
  process.exit(1);
}
