/**
 * Policy for suites that need real servers (PostgreSQL, Mosquitto, the Mosquitto CLI clients).
 *
 * - `SWITCHYARD_TEST_REAL=required` (CI): the suite must run. Missing binaries throw at load time, so the file
 *   fails instead of skipping; a server that cannot start fails the test that starts it.
 * - unset (or `auto`): the suite runs when the binaries are installed and is skipped with one line otherwise.
 *
 * PostgreSQL counts as available when `SWITCHYARD_TEST_PG_URL` points at a running cluster, even without binaries.
 * To simulate a machine without the binaries: `SWITCHYARD_TEST_PG_BIN=/nonexistent` and/or
 * `SWITCHYARD_TEST_MOSQUITTO_BIN=/nonexistent`.
 *
 * @example
 * const real = realServers(['postgres', 'mosquitto']);
 * describe('shadow store (PostgreSQL)', { skip: real.skip }, () => { … });
 */
import { findMosquittoBinaries, findPostgresBinDir } from '../../scripts/test-servers.mjs';

export type RealServer = 'postgres' | 'mosquitto' | 'mosquitto-clients';

export type RealMode = 'required' | 'auto';

/** The mode from `SWITCHYARD_TEST_REAL`; anything but `required` (or unset) is refused to catch typos. */
export function realMode(): RealMode {
  const value = process.env.SWITCHYARD_TEST_REAL ?? '';
  if (value === 'required') return 'required';
  if (value === '' || value === 'auto') return 'auto';
  throw new Error(`SWITCHYARD_TEST_REAL must be "required", "auto" or unset, not "${value}"`);
}

/** Debian package that provides each server. */
const debianPackage: Record<RealServer, string> = {
  postgres: 'postgresql',
  mosquitto: 'mosquitto',
  'mosquitto-clients': 'mosquitto-clients',
};

/** Why `server` cannot run here, or null when it can. */
export function missingReason(server: RealServer): string | null {
  switch (server) {
    case 'postgres':
      if (process.env.SWITCHYARD_TEST_PG_URL) return null;
      return findPostgresBinDir() === null ? 'PostgreSQL binaries not found (initdb, pg_ctl, postgres)' : null;
    case 'mosquitto':
      return findMosquittoBinaries().mosquitto === null ? 'mosquitto binary not found' : null;
    case 'mosquitto-clients': {
      const { mosquittoPub, mosquittoSub } = findMosquittoBinaries();
      return mosquittoPub === null || mosquittoSub === null ? 'mosquitto_pub/mosquitto_sub not found' : null;
    }
    default: {
      const unknown: never = server;
      throw new Error(`unknown real server ${String(unknown)}`);
    }
  }
}

/**
 * Decides whether a suite needing `needs` runs. Returns `{ skip: false }` to run, or `{ skip: reason }` (one
 * line, for node:test's `skip` option). Throws under `SWITCHYARD_TEST_REAL=required` when something is missing.
 */
export function realServers(needs: RealServer[]): { skip: string | false } {
  const missing = needs.flatMap((server) => {
    const reason = missingReason(server);
    return reason === null ? [] : [{ server, reason }];
  });
  if (missing.length === 0) return { skip: false };
  const reasons = missing.map((m) => m.reason).join('; ');
  const fixes = `install ${missing.map((m) => debianPackage[m.server]).join(' ')}`;
  if (realMode() === 'required') {
    throw new Error(`SWITCHYARD_TEST_REAL=required but ${reasons} (${fixes})`);
  }
  return { skip: `${reasons} (${fixes} or set SWITCHYARD_TEST_REAL=required in CI)` };
}
