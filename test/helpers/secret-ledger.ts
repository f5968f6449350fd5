/**
 * The whole-suite secret scan's ledger. `npm test` (scripts/run-tests.mjs) sets SWITCHYARD_TEST_LEDGER_DIR; the test
 * environments then record there every secret the tests create or send (device and API tokens from the answers
 * that create them, broker passwords, the admin token), every error body they receive, the servers' logs (info)
 * and, when an environment stops, its audit rows, shadows, migration rows and outbox rows. After the run,
 * scripts/secret-scan.mjs looks for every recorded secret in everything else recorded: any hit fails the run.
 * Without the variable (a single file run by hand, say) nothing is recorded.
 */
import { appendFileSync, createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';

const dir = process.env.SWITCHYARD_TEST_LEDGER_DIR || undefined;
let seq = 0;
let logStream: WriteStream | undefined;

export const ledgerEnabled = dir !== undefined;

/** Records secrets (strings of 16+ characters; shorter ones would match by chance). */
export function recordSecrets(values: Iterable<unknown>): void {
  if (!dir) return;
  const lines = [...values].filter((v): v is string => typeof v === 'string' && v.length >= 16 && !v.includes('\n'));
  if (lines.length > 0) appendFileSync(join(dir, `secrets-${process.pid}.txt`), `${lines.join('\n')}\n`);
}

/** Records text the scan must find no secret in (`what` names it in a hit). */
export function recordScanned(what: string, text: string): void {
  if (!dir) return;
  appendFileSync(join(dir, `scanned-${process.pid}-${++seq}.txt`), `${what}\n${text}\n`);
}

/** A pino destination appending the servers' log lines to the ledger (one stream per test process). */
export function ledgerLogDestination(): { write(line: string): void } | undefined {
  if (!dir) return undefined;
  logStream ??= createWriteStream(join(dir, `log-${process.pid}.txt`), { flags: 'a' });
  const stream = logStream;
  return { write: (line: string) => void stream.write(line) };
}

/** The secrets in an API exchange: `token` of the answer, `password` of the request body. */
export function secretsOfExchange(requestBody: unknown, answer: unknown): string[] {
  const out: string[] = [];
  if (typeof answer === 'object' && answer !== null && typeof (answer as { token?: unknown }).token === 'string') out.push((answer as { token: string }).token);
  if (typeof requestBody === 'object' && requestBody !== null && typeof (requestBody as { password?: unknown }).password === 'string') out.push((requestBody as { password: string }).password);
  return out;
}
