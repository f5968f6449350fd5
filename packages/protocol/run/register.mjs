/**
 * `import '@switchyard/protocol/run-ts'` (or `node --import @switchyard/protocol/run-ts`): loads `.ts` sources
 * through ts-hooks.mjs from then on, with source maps for stack traces. See ts-hooks.mjs for why not tsx.
 */
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
