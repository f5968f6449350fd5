/**
 * Server events (migration steps, presence, broker connections) for operators: `GET /api/v1/events`.
 *
 * Every event goes through PostgreSQL NOTIFY on one channel, so an operator connected to any server
 * instance sees the changes made by all of them (on PGlite the NOTIFY stays in-process). The instance that
 * publishes an event hands it to its own subscribers at once, without the round trip through the database, and
 * skips it when its NOTIFY comes back (each bus tags its notifications with a random origin id). Events are
 * a live view, not a log: a client that connects later reads the current state from the API.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Db } from '../db/db.ts';
import type { Logger } from '../log.ts';

export const EVENTS_CHANNEL = 'switchyard_events';

export type ServerEvent =
  | { type: 'migration'; data: Record<string, unknown> }
  | { type: 'presence'; data: { deviceUuid: string; state: 'online' | 'offline'; brokerId: number } }
  | { type: 'broker'; data: { brokerId: number; connected: boolean } };

export interface EventBus {
  start(): Promise<void>;
  publish(event: ServerEvent): void;
  subscribe(fn: (event: ServerEvent & { at: string }) => void): () => void;
  stop(): Promise<void>;
}

export function createEventBus(opts: { db: Db; log: Logger }): EventBus {
  const log = opts.log.child({ component: 'events' });
  const emitter = new EventEmitter();
  emitter.setMaxListeners(0);
  let unlisten: (() => Promise<void>) | null = null;
  /** Tags this bus's notifications, so that it skips them when they come back. */
  const origin = randomUUID();
  return {
    async start() {
      unlisten = await opts.db.listen(EVENTS_CHANNEL, (payload) => {
        let note: (ServerEvent & { at: string; origin?: string }) | undefined;
        try {
          note = JSON.parse(payload) as ServerEvent & { at: string; origin?: string };
        } catch (err) {
          log.warn({ err }, 'ignored a malformed event notification');
          return;
        }
        if (note.origin === origin) return; // ours: already handed out by publish()
        const { origin: _origin, ...event } = note;
        emitter.emit('event', event);
      });
    },
    publish(event) {
      const stamped = { ...event, at: new Date().toISOString() };
      const payload = JSON.stringify({ ...stamped, origin });
      if (payload.length > 7900) {
        log.warn({ type: event.type }, 'event too large for NOTIFY; dropped');
        return;
      }
      emitter.emit('event', stamped);
      opts.db.notify(EVENTS_CHANNEL, payload).catch((err: unknown) => log.warn({ err }, 'could not publish an event'));
    },
    subscribe(fn) {
      emitter.on('event', fn);
      return () => emitter.off('event', fn);
    },
    async stop() {
      await unlisten?.();
      emitter.removeAllListeners();
    },
  };
}
