/**
 * `switchyard tokens create|list|revoke` and `switchyard audit`: API tokens and the audit log through a running
 * server's API (an admin-scope token is needed for both). Bad flags exit 2 with a message naming the flag;
 * a refusal by the server exits 1 with its message and code.
 */
import type { Command } from 'commander';
import { CliError, resolveClient, table, type ClientOptions } from './admin-client.ts';

export const TOKEN_SCOPES = ['admin', 'operator', 'viewer'] as const;

/** The server's rule for a token name: 1–100 characters, no control characters, no leading/trailing space. */
// eslint-disable-next-line no-control-regex -- refusing control characters is the point
const NAME_RE = /^[^\s\x00-\x1f\x7f](?:[^\x00-\x1f\x7f]{0,98}[^\s\x00-\x1f\x7f])?$/;

const intFlag = (flag: string, raw: string | undefined, min: number, max: number): number | undefined => {
  if (raw === undefined) return undefined;
  if (!/^[0-9]{1,16}$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw new CliError(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`, 2);
  }
  return Number(raw);
};

/** `--since`/`--until`: an RFC 3339 date-time, or a duration back from now (`90s`, `15m`, `2h`, `7d`). */
export function parseInstant(flag: string, raw: string, now = Date.now()): string {
  const rel = /^([1-9][0-9]{0,8})([smhd])$/.exec(raw);
  if (rel) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[rel[2] as 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(rel[1]) * unit).toISOString();
  }
  const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;
  const t = Date.parse(raw);
  if (!rfc3339.test(raw) || Number.isNaN(t)) {
    throw new CliError(`${flag} must be an RFC 3339 date-time (2024-05-01T12:00:00Z) or a duration back from now (90s, 15m, 2h, 7d), got ${JSON.stringify(raw)}`, 2);
  }
  return new Date(t).toISOString();
}

type Say = (line: string) => void;
type WithClient = (cmd: Command) => Command;

export function registerTokenCommands(program: Command, withClient: WithClient, say: Say): void {
  const tokens = program.command('tokens').description('API tokens with scopes (admin, operator, viewer); needs an admin token');

  withClient(tokens.command('create').description('create an API token; it is printed once, only its hash is kept'))
    .option('--name <name>', 'who or what uses it (1-100 characters); shown in the audit log')
    .option('--scope <scope>', 'viewer (reads), operator (+ assign, jobs, shadows) or admin (everything)')
    .option('--json', 'print the answer as JSON', false)
    .action(async (o: ClientOptions & { name?: string; scope?: string; json: boolean }) => {
      if (o.name === undefined) throw new CliError('--name is required (who or what uses the token)', 2);
      if (!NAME_RE.test(o.name)) throw new CliError(`--name must be 1-100 characters without control characters or leading/trailing spaces, got ${JSON.stringify(o.name)}`, 2);
      if (o.scope === undefined) throw new CliError(`--scope is required: one of ${TOKEN_SCOPES.join(', ')}`, 2);
      if (!(TOKEN_SCOPES as readonly string[]).includes(o.scope)) throw new CliError(`--scope must be one of ${TOKEN_SCOPES.join(', ')}, got ${JSON.stringify(o.scope)}`, 2);
      const client = await resolveClient(o);
      const created = await client.request<{ id: number; name: string; scope: string; token: string }>('POST', '/tokens', { name: o.name, scope: o.scope });
      if (o.json) {
        say(JSON.stringify(created));
        return;
      }
      say(`token ${created.id} ${JSON.stringify(created.name)} (scope ${created.scope}) created:`);
      say(created.token);
      say('It is shown only now: store it (the server keeps only its hash). Revoke it with: switchyard tokens revoke ' + String(created.id));
    });

  withClient(tokens.command('list').description('list API tokens (never the tokens themselves)'))
    .option('--all', 'also list revoked tokens', false)
    .option('--limit <n>', 'at most this many (1-500)', '50')
    .option('--offset <n>', 'skip this many', '0')
    .option('--json', 'print the answer as JSON', false)
    .action(async (o: ClientOptions & { all: boolean; limit: string; offset: string; json: boolean }) => {
      const limit = intFlag('--limit', o.limit, 1, 500)!;
      const offset = intFlag('--offset', o.offset, 0, 1_000_000_000)!;
      const client = await resolveClient(o);
      const q = new URLSearchParams({ limit: String(limit), offset: String(offset), includeRevoked: String(o.all) });
      const res = await client.request<{ items: Array<Record<string, unknown>>; total: number }>('GET', `/tokens?${q}`);
      if (o.json) {
        say(JSON.stringify(res));
        return;
      }
      say(table(res.items, ['id', 'name', 'scope', 'createdAt', 'createdBy', 'lastUsedAt', ...(o.all ? ['revokedAt'] : [])]));
      say(`${res.items.length} of ${res.total}`);
    });

  withClient(tokens.command('revoke <id>').description('revoke an API token: its next request gets 401')).action(async (id: string, o: ClientOptions) => {
    const n = intFlag('<id>', id, 1, 2147483647)!;
    const client = await resolveClient(o);
    await client.request('DELETE', `/tokens/${n}`);
    say(`token ${n} revoked`);
  });
}

export function registerAuditCommand(program: Command, withClient: WithClient, say: Say): void {
  withClient(program.command('audit').description('the audit log, newest first (needs an admin token)'))
    .option('--actor <actor>', 'admin, token:<id>:<name>, device:<uuid>, system, anonymous; a trailing * matches a prefix (device:*)')
    .option('--action <action>', 'e.g. broker.create, device.assign_broker, migration.completed, request.refused; a trailing * matches a prefix (migration.*)')
    .option('--target-type <type>', 'broker, device, token, job, migration, …')
    .option('--target-id <id>', 'a broker id, device uuid, token id, …')
    .option('--outcome <outcome>', 'ok or error')
    .option('--since <when>', 'at or after: RFC 3339, or a duration back from now (15m, 2h, 7d)')
    .option('--until <when>', 'before: RFC 3339, or a duration back from now')
    .option('--before-id <id>', 'only rows older than this id (the last id of the previous page)')
    .option('--limit <n>', 'at most this many (1-500)', '50')
    .option('--offset <n>', 'skip this many', '0')
    .option('--json', 'print the answer as JSON', false)
    .action(async (o: ClientOptions & Record<string, string | boolean | undefined>) => {
      const q = new URLSearchParams();
      const text = (flag: string, key: string, value: unknown, re: RegExp, rule: string): void => {
        if (value === undefined) return;
        if (typeof value !== 'string' || !re.test(value)) throw new CliError(`${flag} must be ${rule}, got ${JSON.stringify(value)}`, 2);
        q.set(key, value);
      };
      // eslint-disable-next-line no-control-regex -- refusing control characters is the point
      const printable = /^[^\x00-\x1f\x7f]{1,200}$/;
      text('--actor', 'actor', o.actor, printable, '1-200 printable characters');
      text('--action', 'action', o.action, printable, '1-200 printable characters');
      text('--target-type', 'targetType', o.targetType, /^[a-z_]{1,32}$/, '1-32 of a-z and _');
      text('--target-id', 'targetId', o.targetId, printable, '1-200 printable characters');
      text('--outcome', 'outcome', o.outcome, /^(ok|error)$/, 'ok or error');
      if (typeof o.since === 'string') q.set('since', parseInstant('--since', o.since));
      if (typeof o.until === 'string') q.set('until', parseInstant('--until', o.until));
      if (q.has('since') && q.has('until') && q.get('since')! >= q.get('until')!) throw new CliError('--since must be earlier than --until', 2);
      const beforeId = intFlag('--before-id', o.beforeId as string | undefined, 1, Number.MAX_SAFE_INTEGER);
      if (beforeId !== undefined) q.set('beforeId', String(beforeId));
      q.set('limit', String(intFlag('--limit', o.limit as string, 1, 500)));
      q.set('offset', String(intFlag('--offset', o.offset as string, 0, 1_000_000_000)));
      const client = await resolveClient(o);
      const res = await client.request<{ items: Array<Record<string, unknown>>; total: number }>('GET', `/audit?${q}`);
      if (o.json === true) {
        say(JSON.stringify(res));
        return;
      }
      const rows = res.items.map((r) => {
        const details = JSON.stringify(r.details ?? {});
        return { ...r, details: details.length > 100 ? `${details.slice(0, 99)}…` : details };
      });
      say(table(rows, ['id', 'at', 'actor', 'action', 'targetType', 'targetId', 'outcome', 'details']));
      say(`${res.items.length} of ${res.total}`);
    });
}
