/**
 * `GET /events`: server-sent events (hand-written SSE; `@fastify/sse` needs a newer Node).
 * `?types=migration,presence,broker` filters; a comment line every 15 s keeps proxies from closing it.
 * A stream opened with an API token ends when that token is revoked (on any instance): a last `event: closed` with
 * the reason, then the end of the response — a revoked token keeps nothing open.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { RevocationFeed } from '../tokens/tokens.service.ts';
import type { EventBus } from './event-bus.ts';

export const eventRoutes: FastifyPluginAsync<{ bus: EventBus; heartbeatMs?: number; revocations?: RevocationFeed }> = async (
  app,
  { bus, heartbeatMs = 15_000, revocations },
) => {
  app.get<{ Querystring: { types?: string } }>(
    '/events',
    {
      schema: {
        tags: ['events'],
        summary: 'Live server events (text/event-stream): migration steps, presence, broker connections',
        querystring: {
          type: 'object',
          properties: { types: { type: 'string', pattern: '^(migration|presence|broker)(,(migration|presence|broker))*$' } },
          additionalProperties: false,
        },
      },
    },
    (req, reply) => {
      const wanted = req.query.types ? new Set(req.query.types.split(',')) : null;
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      // A HEAD request gets the head alone: node ignores every write of a HEAD answer, so the stream would hold the
      // connection (and a bus subscription) with nothing ever sent. Found by test/integration/http-fuzz.test.ts.
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      res.write(': switchyard events\n\n');
      const off = bus.subscribe((e) => {
        if (wanted && !wanted.has(e.type)) return;
        res.write(`event: ${e.type}\ndata: ${JSON.stringify({ ...e.data, at: e.at })}\n\n`);
      });
      const beat = setInterval(() => res.write(': keep-alive\n\n'), heartbeatMs);
      const tokenId = req.principal?.kind === 'admin' ? req.principal.tokenId : undefined;
      const offRevoked =
        tokenId !== undefined && revocations
          ? revocations.subscribe((revoked) => {
              if (revoked !== tokenId) return;
              res.write(`event: closed\ndata: ${JSON.stringify({ reason: 'token revoked' })}\n\n`);
              close();
              res.end();
            })
          : undefined;
      const close = (): void => {
        clearInterval(beat);
        off();
        offRevoked?.();
      };
      req.raw.on('close', close);
      res.on('error', close);
    },
  );
};
