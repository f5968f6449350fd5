/**
 * Fastify's per-request logger (`request.log`), created only when something is logged at an enabled level.
 *
 * Fastify calls `logger.child({reqId})` for every request. With pino (and our redaction paths) that child costs a
 * few microseconds — serialised bindings, a redaction copy — which showed as ~5 % of the server's CPU on the config
 * poll's 304 path, where nothing is ever logged at the default level. {@link LazyRequestLogger} answers the level
 * methods with nothing while their level is disabled and builds the real child on the first line that is written,
 * so a request that logs keeps its `reqId` binding exactly as before. A class, so that a request costs one small
 * object and no closures.
 */
import type { FastifyBaseLogger } from 'fastify';

type Level = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
type ChildOptions = Parameters<FastifyBaseLogger['child']>[1];
type LevelCheck = { isLevelEnabled?: (level: string) => boolean };

export class LazyRequestLogger {
  #parent: FastifyBaseLogger;
  #bindings: Record<string, unknown>;
  #options: ChildOptions;
  #real: FastifyBaseLogger | undefined;

  constructor(parent: FastifyBaseLogger, bindings: Record<string, unknown>, options?: ChildOptions) {
    this.#parent = parent;
    this.#bindings = bindings;
    this.#options = options;
  }

  #get(): FastifyBaseLogger {
    return (this.#real ??= this.#parent.child(this.#bindings, this.#options));
  }

  #write(level: Level, args: unknown[]): void {
    const target = this.#real ?? this.#parent;
    const check = (target as LevelCheck).isLevelEnabled;
    if (check !== undefined && !check.call(target, level)) return;
    (this.#get()[level] as (...a: unknown[]) => void)(...args);
  }

  get level(): string {
    return (this.#real ?? this.#parent).level;
  }

  set level(value: string) {
    this.#get().level = value;
  }

  fatal(...args: unknown[]): void {
    this.#write('fatal', args);
  }
  error(...args: unknown[]): void {
    this.#write('error', args);
  }
  warn(...args: unknown[]): void {
    this.#write('warn', args);
  }
  info(...args: unknown[]): void {
    this.#write('info', args);
  }
  debug(...args: unknown[]): void {
    this.#write('debug', args);
  }
  trace(...args: unknown[]): void {
    this.#write('trace', args);
  }
  silent(): void {}

  child(bindings: Record<string, unknown>, options?: ChildOptions): FastifyBaseLogger {
    return this.#get().child(bindings, options);
  }
}

export function lazyChildLogger(parent: FastifyBaseLogger, bindings: Record<string, unknown>, options?: ChildOptions): FastifyBaseLogger {
  return new LazyRequestLogger(parent, bindings, options) as unknown as FastifyBaseLogger;
}

/** Fastify's `childLoggerFactory` option: every `request.log` a {@link LazyRequestLogger}. */
export function lazyChildLoggerFactory(logger: FastifyBaseLogger, bindings: Record<string, unknown>, options?: ChildOptions): FastifyBaseLogger {
  return lazyChildLogger(logger, bindings, options);
}
