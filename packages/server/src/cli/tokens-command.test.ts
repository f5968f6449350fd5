import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { CliError } from './admin-client.ts';
import { parseInstant, registerAuditCommand, registerTokenCommands } from './tokens-command.ts';

/** A program like `bin/switchyard.ts` builds, with output collected; no request is sent in these cases. */
function program(): { run(args: string[]): Promise<void>; out: string[] } {
  const out: string[] = [];
  const p = new Command().exitOverride().configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  const withClient = (cmd: Command): Command => cmd.option('--api-url <url>').option('--token <token>');
  registerTokenCommands(p, withClient, (l) => out.push(l));
  registerAuditCommand(p, withClient, (l) => out.push(l));
  // A port nobody listens on: a flag error must come before any request.
  return { out, run: (args) => p.parseAsync(['node', 'switchyard', ...args, '--api-url', 'http://127.0.0.1:9', '--token', 'sya_x']).then(() => undefined) };
}

const usage = (pattern: RegExp) => (err: unknown) => err instanceof CliError && err.exitCode === 2 && pattern.test(err.message);

describe('switchyard tokens / audit flags', () => {
  it('refuses each bad flag with exit code 2 and a message naming it', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['tokens', 'create', '--scope', 'viewer'], /--name is required/],
      [['tokens', 'create', '--name', 'ci'], /--scope is required/],
      [['tokens', 'create', '--name', 'ci', '--scope', 'root'], /--scope must be one of admin, operator, viewer, got "root"/],
      [['tokens', 'create', '--name', ' ci', '--scope', 'viewer'], /--name must be/],
      [['tokens', 'create', '--name', 'x'.repeat(101), '--scope', 'viewer'], /--name must be/],
      [['tokens', 'list', '--limit', '0'], /--limit must be an integer from 1 to 500, got "0"/],
      [['tokens', 'list', '--offset', '-1'], /--offset/],
      [['tokens', 'revoke', 'abc'], /<id> must be an integer/],
      [['tokens', 'revoke', '0'], /<id> must be an integer/],
      [['audit', '--outcome', 'maybe'], /--outcome must be ok or error/],
      [['audit', '--since', 'yesterday'], /--since must be an RFC 3339 date-time/],
      [['audit', '--until', '2024-13-45T00:00:00Z'], /--until must be/],
      [['audit', '--since', '1h', '--until', '2h'], /--since must be earlier than --until/],
      [['audit', '--limit', '501'], /--limit/],
      [['audit', '--target-type', 'Broker'], /--target-type must be 1-32 of a-z and _/],
      [['audit', '--actor', 'a\u0001b'], /--actor must be/],
      [['audit', '--before-id', 'x'], /--before-id/],
    ];
    for (const [args, pattern] of cases) {
      await assert.rejects(program().run(args), usage(pattern), args.join(' '));
    }
  });

  it('reads --since/--until as RFC 3339 or as a duration back from now', () => {
    const now = Date.parse('2024-05-01T12:00:00Z');
    assert.equal(parseInstant('--since', '90s', now), '2024-05-01T11:58:30.000Z');
    assert.equal(parseInstant('--since', '15m', now), '2024-05-01T11:45:00.000Z');
    assert.equal(parseInstant('--since', '2h', now), '2024-05-01T10:00:00.000Z');
    assert.equal(parseInstant('--since', '7d', now), '2024-04-24T12:00:00.000Z');
    assert.equal(parseInstant('--since', '2024-05-01T14:00:00+02:00', now), '2024-05-01T12:00:00.000Z');
    for (const bad of ['0m', '1w', '2024-05-01', 'now', '-1h', '']) assert.throws(() => parseInstant('--since', bad, now), usage(/--since/), bad);
  });

  it('exits 2 from the real binary on a bad flag and on an unknown option', async () => {
    const bin = fileURLToPath(new URL('../../bin/switchyard.mjs', import.meta.url));
    const run = (args: string[]) =>
      new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, SWITCHYARD_ADMIN_TOKEN: 'sya_unused-0123456789' }, stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        child.once('exit', (code) => {
          clearTimeout(timer);
          resolve({ code, err });
        });
      });
    const bad = await run(['tokens', 'create', '--name', 'ci', '--scope', 'root']);
    assert.equal(bad.code, 2, bad.err);
    assert.match(bad.err, /--scope must be one of admin, operator, viewer/);
    const unknown = await run(['audit', '--colour']);
    assert.equal(unknown.code, 2, unknown.err);
    assert.match(unknown.err, /unknown option '--colour'/);
  });
});
