#!/usr/bin/env node
// Runs the TypeScript sources as they load (esbuild, no keepNames: see @switchyard/protocol/run/ts-hooks.mjs), so
// `npm start` needs no build step.
import '@switchyard/protocol/run-ts';

await import('../src/bin/switchyard.ts');
