import { createPgDb } from '../../src/db/pg-db.ts';
import { startPostgres, type TestPostgres } from '../../../../test/helpers/postgres.ts';
import { realServers } from '../../../../test/helpers/real.ts';
import { apiSuite } from './api-suite.ts';

let server: TestPostgres | undefined;

apiSuite('PostgreSQL', {
  skip: realServers(['postgres']).skip,
  async open() {
    server = await startPostgres();
    return createPgDb(server.url, { max: 4 });
  },
  async close(db) {
    await db.close();
    await server?.stop();
  },
});
