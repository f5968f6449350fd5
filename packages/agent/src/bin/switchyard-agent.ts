/**
 * `switchyard-agent` — runs one device agent. Options come from flags or the environment (`--help` lists
 * them); logs go to stdout as JSON (pino). SIGINT/SIGTERM stop it cleanly (exit 0). Exit codes: 0 stopped,
 * 1 failed while running or stopping, 2 bad configuration (including a `--ca-file` that is missing or not PEM,
 * checked at start) or a device that cannot start (the message says which option; the token is never printed).
 */
import { pino } from 'pino';
import { agentUsage, AgentConfigError, parseAgentConfig } from '../config.ts';
import { AgentStartError, createAgent } from '../agent.ts';

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(`${agentUsage()}\n`);
  process.exit(0);
}

let config;
try {
  config = parseAgentConfig(argv, process.env);
} catch (err) {
  if (err instanceof AgentConfigError) {
    process.stderr.write(`switchyard-agent: ${err.message}\nRun switchyard-agent --help for the options.\n`);
    process.exit(2);
  }
  throw err;
}

const log = pino({
  level: config.logLevel,
  base: { app: 'switchyard-agent' },
  redact: { paths: ['password', '*.password', 'token', '*.token', 'deviceToken', '*.deviceToken', 'authorization', '*.authorization'], censor: '[redacted]' },
});
const agent = createAgent({ config, log });

let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'shutting down');
  agent.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      log.error({ err }, 'clean stop failed');
      process.exit(1);
    },
  );
};
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

try {
  await agent.start();
} catch (err) {
  if (stopping) {
    // A signal during boot: shutdown() exits.
  } else if (err instanceof AgentConfigError) {
    // Checked at start, e.g. the --ca-file bundle (missing, unreadable, not PEM).
    log.fatal({ code: err.code, issues: err.issues }, err.message);
    process.stderr.write(`switchyard-agent: ${err.message}\nRun switchyard-agent --help for the options.\n`);
    process.exit(2);
  } else if (err instanceof AgentStartError) {
    log.fatal({ code: err.code }, err.message);
    process.stderr.write(`switchyard-agent: ${err.message}\n`);
    process.exit(2);
  } else {
    log.fatal({ err }, 'agent failed to start');
    process.exit(1);
  }
}
