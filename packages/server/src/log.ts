import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/**
 * The process logger. Structured JSON (pino); components take child loggers
 * (`log.child({ component: 'broker-pool', brokerId })`).
 * Secrets never reach a log line: the redact list below is a last line of defence, not the plan.
 */
export function createLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const level = options.level ?? process.env.LOG_LEVEL ?? 'info';
  return pino(
    {
      level,
      base: { app: 'switchyard' },
      redact: {
        paths: ['password', '*.password', 'token', '*.token', 'authorization', '*.authorization', 'req.headers.authorization'],
        censor: '[redacted]',
      },
    },
    options.destination,
  );
}

/** A logger that writes nothing (tests that do not look at logs). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
