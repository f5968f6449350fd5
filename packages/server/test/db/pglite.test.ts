import { createPgliteDb } from '../../src/db/pglite-db.ts';
import { dbContract } from './db-contract.ts';

// One in-memory PGlite for the whole file (a fresh one costs seconds and ~0.8 GiB at peak).
dbContract('PGlite, in memory', { kind: 'pglite', open: () => createPgliteDb(undefined) });
