/**
 * The HTTP application. `buildServer(deps)` registers everything and does not listen (`main.ts` does);
 * tests drive it with `app.inject`.
 *
 * Layout:
 * - public: `/healthz`, `/readyz`, `/metrics` (when `deps.metrics`), `/openapi.json`, `/docs` (Swagger UI from its bundled assets, no network);
 * - `/api/v1`: the auth hook first (bearer token → `request.principal`), then brokers, devices and any
 *   `deps.plugins` (e.g. the shadow routes), which therefore inherit authentication.
 *
 * JSON only (other content types → 415), bodies up to 128 KiB (→ 413). Every error answer is
 * `{ error, message, code }` (see `error-handler.ts` and docs/errors.md). Answers carry `x-request-id`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import { authPlugin, createTokenCache } from '../auth/auth.plugin.ts';
import { auditRoutes } from '../audit/audit.routes.ts';
import { createAuditService } from '../audit/audit.service.ts';
import { requestAuditPlugin } from '../audit/request-audit.ts';
import { tokenRoutes } from '../tokens/tokens.routes.ts';
import { createTokenService } from '../tokens/tokens.service.ts';
import { brokerRoutes } from '../brokers/brokers.routes.ts';
import { createBrokerService } from '../brokers/brokers.service.ts';
import type { Config } from '../config.ts';
import { lazyChildLoggerFactory } from './lazy-request-logger.ts';
import { REQUEST_ID_RE, createConfigFastPath } from './config-fast-path.ts';
import type { DeviceConfig } from '../assignments/device-config.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../db/db.ts';
import { deviceRoutes } from '../devices/devices.routes.ts';
import { createDeviceService } from '../devices/devices.service.ts';
import { DEVICE_CREDENTIALS_CHANNEL, type ProvisioningService } from '../provisioning/provisioning.service.ts';
import type { Logger } from '../log.ts';
import { installErrorHandling, sendError } from './error-handler.ts';
import { createClientErrorHandler } from './client-errors.ts';
import { installJsonBodyParser } from './json-body.ts';
import { healthRoutes, type BrokerPoolView } from './health.routes.ts';
import { createValidatorFactory } from './validation.ts';
import { installHttpMetrics, metricsRoutes } from '../metrics/metrics.routes.ts';
import type { SwitchyardMetrics } from '../metrics/switchyard-metrics.ts';

export type { BrokerPoolStatus, BrokerPoolView } from './health.routes.ts';
export type { Principal, AdminScope } from '../auth/auth.plugin.ts';

/**
 * Largest accepted request body, bytes (128 KiB): the largest legitimate body is a shadow update, whose payload AWS
 * caps at 128 KiB (`SHADOW_LIMITS.maxPayloadBytes`); job documents are at most 32 KiB. Anything larger is refused
 * with 413 PAYLOAD_TOO_LARGE before it is buffered whole.
 */
export const BODY_LIMIT = 128 * 1024;

export interface ServerDeps {
  db: Db;
  log: Logger;
  config: Config;
  /** sha256 hex of the admin token (from `ensureAdminToken`). */
  adminTokenHash: string;
  /** Encrypts broker passwords at rest. */
  secretBox: SecretBox;
  /** The MQTT broker pool, for `/readyz`; without it readiness checks the database only. */
  brokerPool?: BrokerPoolView | undefined;
  /**
   * Called after every committed broker change (create, update, delete). Default: `brokerPool.refresh()`.
   * The lead wires the pool refresh plus a NOTIFY for the other instances here.
   */
  onBrokersChange?: (() => void | Promise<void>) | undefined;
  /** Plugins registered under `/api/v1` after the auth hook (so they are authenticated), e.g. the shadow routes. */
  plugins?: Array<{ plugin: FastifyPluginAsync<any>; opts?: object }> | undefined;
  /** Device accounts on brokers (registration, token rotation, deletion); see `provisioning/`. */
  provisioning?: ProvisioningService | undefined;
  /** Metrics (`metrics/`): when given, `GET /metrics` is served and every HTTP answer is counted. */
  metrics?: SwitchyardMetrics | undefined;
  /**
   * The config route's in-memory copy (no database read): with it, the config poll's 304 is answered before Fastify
   * routes the request when everything is cached (see config-fast-path.ts).
   */
  cachedConfig?: ((deviceUuid: string) => DeviceConfig | undefined) | undefined;
}

export async function buildServer(deps: ServerDeps): Promise<FastifyInstance> {
  const log = deps.log.child({ component: 'http' });
  // Set once the token cache exists (below); until then every request goes to Fastify.
  let fastPath: ((req: IncomingMessage, res: ServerResponse) => boolean) | null = null;
  const app = Fastify({
    // The server Fastify would build (same timeouts), with the config poll's 304 answered first when it can be.
    serverFactory: (handler, options) => {
      const o = options as { keepAliveTimeout?: number; requestTimeout?: number; connectionTimeout?: number };
      const server = createServer((req, res) => {
        if (fastPath === null || !fastPath(req, res)) handler(req, res);
      });
      server.keepAliveTimeout = o.keepAliveTimeout ?? 72_000;
      server.requestTimeout = o.requestTimeout ?? 0;
      server.setTimeout(o.connectionTimeout ?? 0);
      return server;
    },
    loggerInstance: log as FastifyBaseLogger,
    childLoggerFactory: lazyChildLoggerFactory,
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: 512, ignoreTrailingSlash: true },
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_RE.test(given) ? given : randomUUID();
    },
    schemaController: { compilersFactory: { buildValidator: createValidatorFactory() } },
    frameworkErrors: (err, request, reply) => sendError(err, request, reply, BODY_LIMIT),
    // Requests Node's parser refuses (headers over 16 KiB, malformed request lines): a catalogued answer too.
    clientErrorHandler: createClientErrorHandler(log as FastifyBaseLogger),
    // `__proto__` / `constructor.prototype` keys in a body are refused (400 INVALID_JSON), not stripped.
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
  });

  installErrorHandling(app, BODY_LIMIT);
  // JSON only: without the text/plain parser every non-JSON body is 415.
  app.removeContentTypeParser('text/plain');
  // Strict UTF-8, no NUL or unpaired surrogate anywhere in a JSON body (see json-body.ts).
  installJsonBodyParser(app);
  // Callback style, not async: this runs on every answer, and a promise per request shows on the 304 path.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id);
    done(null, payload);
  });
  if (deps.metrics) installHttpMetrics(app, deps.metrics);

  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Switchyard API',
        description: 'Control plane for moving IoT devices between MQTT brokers. Errors: `{ error, message, code }` (see docs/errors.md).',
        version: '1',
      },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'Admin token (sya_…), API token with a scope (sya_/syo_/syv_…; each operation’s x-switchyard-scope is the least it needs) or device token (syd_…)' } } },
      security: [{ bearerAuth: [] }],
      tags: [
        { name: 'brokers', description: 'MQTT broker registry' },
        { name: 'devices', description: 'Device registry' },
        { name: 'health', description: 'Probes' },
      ],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  await app.register(healthRoutes, { db: deps.db, brokerPool: deps.brokerPool });
  if (deps.metrics) await app.register(metricsRoutes, { metrics: deps.metrics });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  const onBrokersChange = deps.onBrokersChange ?? (deps.brokerPool ? () => deps.brokerPool?.refresh() : undefined);
  const brokerPool = deps.brokerPool;
  const brokers = createBrokerService({
    db: deps.db,
    log: deps.log,
    secretBox: deps.secretBox,
    onChange: onBrokersChange,
    // Each broker's `connection` in GET /brokers: this instance's pool state, with the last error (e.g. TLS).
    connections: brokerPool ? () => brokerPool.status() : undefined,
  });
  const tokenCache = createTokenCache();
  if (deps.cachedConfig) {
    const metrics = deps.metrics;
    fastPath = createConfigFastPath({
      deviceOfToken: (token) => tokenCache.get(token),
      cachedConfig: deps.cachedConfig,
      infoLogging: () => log.isLevelEnabled('info'),
      ...(metrics ? { observe: (method: string, route: string, status: number) => metrics.observeHttp(method, route, status) } : {}),
    });
  }
  // API tokens with scopes: looked up on every request (no cache), so a revoked token fails at once everywhere.
  const apiTokens = createTokenService({ db: deps.db, log: deps.log });
  const deviceService = createDeviceService({
    db: deps.db,
    log: deps.log,
    secretBox: deps.secretBox,
    provisioning: deps.provisioning,
    onCredentialsChanged: (uuid) => tokenCache.forgetDevice(uuid),
  });
  // A device deleted (or its token rotated) here stops authenticating here at once; other instances forget it when
  // the transaction's NOTIFY arrives (DEVICE_CREDENTIALS_CHANNEL); a LISTEN gap empties the cache (auth.plugin.ts).
  const devices: typeof deviceService = {
    ...deviceService,
    async remove(uuid, actor) {
      try {
        await deviceService.remove(uuid, actor);
      } finally {
        tokenCache.forgetDevice(uuid);
      }
    },
  };
  const stopForgetting = await deps.db.listen(DEVICE_CREDENTIALS_CHANNEL, (uuid) => tokenCache.forgetDevice(uuid));
  const stopGap = deps.db.onListenGap(() => tokenCache.clear());
  app.addHook('onClose', async () => {
    stopGap();
    await stopForgetting();
  });

  await app.register(
    async (api) => {
      await api.register(authPlugin, { db: deps.db, adminTokenHash: deps.adminTokenHash, tokenCache, apiTokens });
      // Refused and failed mutating requests (and `config.audit` routes) → audit rows; see audit/request-audit.ts.
      await api.register(requestAuditPlugin, { db: deps.db, log: deps.log });
      await api.register(brokerRoutes, { service: brokers });
      await api.register(deviceRoutes, { service: devices });
      for (const { plugin, opts } of deps.plugins ?? []) await api.register(plugin, opts ?? {});
      await api.register(tokenRoutes, { service: apiTokens });
      await api.register(auditRoutes, { service: createAuditService({ db: deps.db }) });
    },
    { prefix: '/api/v1' },
  );

  return app;
}
