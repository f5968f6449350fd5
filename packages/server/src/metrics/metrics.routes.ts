/**
 * `GET /metrics` (public, like `/healthz`: no token; it carries no secret and no device uuid — keep it on the
 * operators' network, see docs/operations.md) and the `onResponse` hook that counts every HTTP answer.
 */
import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { EXPOSITION_CONTENT_TYPE } from './registry.ts';
import type { SwitchyardMetrics } from './switchyard-metrics.ts';

/**
 * Counts every answer of `app` (add it on the root instance, before the routes): method, route pattern and status.
 * A callback hook (no promise per request: the config long-poll path is hot).
 */
export function installHttpMetrics(app: FastifyInstance, metrics: SwitchyardMetrics): void {
  app.addHook('onResponse', (request, reply, done) => {
    metrics.observeHttp(request.method, request.routeOptions.url, reply.statusCode);
    done();
  });
}

export const metricsRoutes: FastifyPluginAsync<{ metrics: SwitchyardMetrics }> = async (app, opts) => {
  app.get(
    '/metrics',
    {
      schema: {
        tags: ['health'],
        summary: 'Prometheus metrics (text exposition format 0.0.4); keep it on the operators’ network',
        security: [],
        response: { 200: { description: 'the metrics, text/plain; version=0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } } },
      },
    },
    async (_request, reply) => {
      const text = await opts.metrics.render();
      return reply.header('content-type', EXPOSITION_CONTENT_TYPE).header('cache-control', 'no-store').send(text);
    },
  );
};
