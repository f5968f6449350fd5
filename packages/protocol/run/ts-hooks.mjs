/**
 * Module customization hooks (`node:module` register) that run this repository's TypeScript sources without a
 * build step: each `.ts` file is stripped of its types by esbuild's `transform` as it is loaded; every other file
 * loads as Node loads it. Our sources import with explicit `.ts` extensions and keep type-only imports explicit
 * (`verbatimModuleSyntax`), so Node's own resolver finds every file and a per-file transform is all it takes.
 *
 * Why not tsx (which the tests still use): tsx compiles with esbuild's `keepNames`, which wraps every function
 * expression in a `__name(fn, "name")` call — an `Object.defineProperty` each time a closure is created. On the
 * server's hot paths (a closure or two per request or per MQTT message) that was ~10 % of its CPU
 * (bench/config-poll: 7,755 → 8,583 req/s with it off). Function names still come from the source for
 * declarations and named expressions; only anonymous arrow functions may lose an inferred name in a stack trace.
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

const TS = /\.[cm]?ts$/;

export async function load(url, context, nextLoad) {
  if (!url.startsWith('file:')) return nextLoad(url, context);
  const path = fileURLToPath(url);
  if (!TS.test(path) || path.endsWith('.d.ts')) return nextLoad(url, context);
  const source = await readFile(path, 'utf8');
  const { code } = await transform(source, {
    loader: 'ts',
    format: path.endsWith('.cts') ? 'cjs' : 'esm',
    target: `node${process.versions.node}`,
    sourcefile: path,
    sourcemap: 'inline',
    tsconfigRaw: { compilerOptions: { verbatimModuleSyntax: true, useDefineForClassFields: true } },
  });
  return { format: path.endsWith('.cts') ? 'commonjs' : 'module', source: code, shortCircuit: true };
}
