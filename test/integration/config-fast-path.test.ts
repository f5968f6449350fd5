/**
 * The config poll's 304 fast path on a whole server (PGlite + Aedes, PostgreSQL + Mosquitto), logging at `warn` so
 * that the path is on: its 304 carries what the route's 304 carries, it is counted like the route's, and it never
 * answers for a token of another device or a config that changed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, type TestEnv } from '../helpers/switchyard.ts';

const IGNORED = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);
const headersOf = (res: Response): Record<string, string> => Object.fromEntries([...res.headers].filter(([k]) => !IGNORED.has(k)));

for (const [kind, skip] of [['embedded', false], ['postgres', realServers(['postgres', 'mosquitto']).skip]] as const) {
  describe(`config poll 304 before routing (${kind})`, { skip }, () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestSwitchyard(kind, { brokers: 1, captureLog: { lines: [], level: 'warn' } });
    });
    after(async () => {
      await env?.stop();
    });

    const config = (uuid: string, token: string, headers: Record<string, string> = {}, query = '') =>
      fetch(`${env.url}/api/v1/devices/${uuid}/config${query}`, { headers: { authorization: `Bearer ${token}`, ...headers } });

    it('answers the cached 304 with the same headers as the route, and counts it as the route', async () => {
      const d = await env.createDevice();
      const first = await config(d.uuid, d.token); // through the route: caches the token and the config
      assert.equal(first.status, 200);
      const etag = first.headers.get('etag')!;
      const scrape = async () => (await (await fetch(`${env.url}/metrics`)).text()).match(/switchyard_http_requests_total\{[^}]*route="\/api\/v1\/devices\/:uuid\/config"[^}]*status_code="304"[^}]*\} (\d+)/)?.[1];
      const before = Number((await scrape()) ?? 0);
      const fast = await config(d.uuid, d.token, { 'if-none-match': etag, 'x-request-id': 'poll-1' });
      const routed = await config(d.uuid, d.token, { 'if-none-match': etag, 'x-request-id': 'poll-2' }, '?wait=0'); // a query: the route answers
      assert.equal(fast.status, 304);
      assert.equal(routed.status, 304);
      assert.deepEqual(headersOf(fast), headersOf(routed));
      assert.equal(fast.headers.get('x-request-id'), 'poll-1');
      assert.equal(routed.headers.get('x-request-id'), 'poll-2');
      assert.equal(await fast.text(), '');
      assert.equal(Number(await scrape()) - before, 2, 'both counted under the route');
    });

    it("never answers with another device's token, or for a config that changed", async () => {
      const a = await env.createDevice();
      const b = await env.createDevice();
      const etagA = (await config(a.uuid, a.token)).headers.get('etag')!;
      const etagB = (await config(b.uuid, b.token)).headers.get('etag')!;
      assert.equal((await config(a.uuid, a.token, { 'if-none-match': etagA })).status, 304);
      // A's token (cached) for B's config (cached, matching ETag): the auth hook refuses it.
      const cross = await config(b.uuid, a.token, { 'if-none-match': etagB });
      assert.equal(cross.status, 403);
      assert.equal(((await cross.json()) as { code: string }).code, 'FORBIDDEN');
      // An assignment changes A's config: the next poll with the old ETag gets the new config.
      assert.equal((await env.api('PUT', `/api/v1/devices/${a.uuid}/broker`, { brokerId: env.brokers[0]!.id, channel: 'poll' })).status, 200);
      const changed = await config(a.uuid, a.token, { 'if-none-match': etagA });
      assert.equal(changed.status, 200);
      assert.notEqual(changed.headers.get('etag'), etagA);
      // A rotated token: 401 at once, the old token's cached config notwithstanding.
      const etagNow = changed.headers.get('etag')!;
      assert.equal((await config(a.uuid, a.token, { 'if-none-match': etagNow })).status, 304);
      assert.equal((await env.api('POST', `/api/v1/devices/${a.uuid}/token`)).status, 200);
      assert.equal((await config(a.uuid, a.token, { 'if-none-match': etagNow })).status, 401);
    });
  });
}
