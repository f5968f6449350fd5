/** A benchmark's command line and progress output: its options, `--help`, whole-number checks, stderr lines. */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

type StringOptions = Record<string, { type: 'string'; default: string }>;

/**
 * Parses the bench's options (every one a string with a default; unknown options are an error) plus `--help`,
 * which prints the header comment of the bench's file (`benchUrl` = its `import.meta.url`) and exits.
 */
export async function benchArgs<O extends StringOptions>(benchUrl: string, options: O): Promise<{ [K in keyof O]: string }> {
  const config: ParseArgsConfig = { options: { ...options, help: { type: 'boolean', default: false } } };
  const { values } = parseArgs(config);
  if (values.help) {
    process.stdout.write(`${(await readFile(fileURLToPath(benchUrl), 'utf8')).split('*/')[0]}*/\n`);
    process.exit(0);
  }
  return values as unknown as { [K in keyof O]: string };
}

/** `raw` as a whole number ≥ `min`, or an error naming the option. */
export function int(name: string, raw: string, min = 1): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
}

/** A comma-separated list of whole numbers ≥ 1 (empty: none). */
export function intList(name: string, raw: string): number[] {
  return raw.trim() === '' ? [] : raw.split(',').map((x) => int(name, x.trim()));
}

/** A progress line on stderr (the results go to stdout). */
export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}
