/** What `switchyard serve` prints for the person who started it (stdout, not the log). */
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Switchyard } from '../serve.ts';

export function printBanner(sy: Switchyard, config: Config, opts: { demo: boolean; demoDevices?: string[] }): void {
  const out: string[] = [];
  const tokenFile = path.join(config.dataDir, 'admin-token');
  const rel = path.relative(process.cwd(), tokenFile) || tokenFile;
  out.push('', `Switchyard is running on ${sy.url}  (API docs: ${sy.url}/docs)`);
  out.push(config.databaseUrl ? '  database: PostgreSQL (DATABASE_URL)' : `  database: embedded PGlite in ${config.dataDir}`);
  for (const b of sy.embeddedBrokers) out.push(`  broker:   ${b.name} (id ${b.id}) at ${b.url}`);
  if (sy.generatedAdminToken) {
    out.push('', `  Admin token (shown once, kept in ${rel}):`, `    ${sy.generatedAdminToken}`);
  } else if (!config.adminToken) {
    out.push('', `  Admin token: in ${rel}`);
  }
  if (opts.demo && sy.embeddedBrokers.length > 0) {
    const tokenExpr = config.adminToken ? '$SWITCHYARD_ADMIN_TOKEN' : `$(cat ${rel})`;
    const b = sy.embeddedBrokers[0]!;
    out.push(
      '',
      '  Try it (60 seconds):',
      `    export TOKEN=${tokenExpr}`,
      `    curl -s -H "Authorization: Bearer $TOKEN" ${sy.url}/api/v1/brokers`,
      `    curl -s -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \\`,
      `         -d '{"uuid":"sensor-1","brokerId":${b.id}}' ${sy.url}/api/v1/devices     # note the device "token"`,
      `    mosquitto_pub -h ${b.host} -p ${b.port} -i sensor-1 -u sensor-1 -P <device token> -q 1 \\`,
      `         -t iot/device/sensor-1/shadow/name/config/update -m '{"state":{"reported":{"fw":"1.0.0"}}}'`,
      `    curl -s -H "Authorization: Bearer $TOKEN" ${sy.url}/api/v1/devices/sensor-1/shadows/config`,
    );
  }
  const demo = opts.demoDevices ?? [];
  if (demo.length > 0 && sy.embeddedBrokers.length > 1) {
    const a = sy.embeddedBrokers[0]!;
    const b = sy.embeddedBrokers[1]!;
    const tokenExpr = config.adminToken ? '$SWITCHYARD_ADMIN_TOKEN' : `$(cat ${rel})`;
    out.push(
      '',
      `  Demo devices (real agents in this process): ${demo.join(', ')} — on ${a.name} at first start`,
      `  Move ${demo[0]} to ${b.name} and follow each step (make-before-break, verified, reported back):`,
      `    npx switchyard assign ${demo[0]} ${b.id}`,
      '  or with curl, then read the migration:',
      `    curl -s -X PUT -H "Authorization: Bearer ${tokenExpr}" -H 'content-type: application/json' \\`,
      `         -d '{"brokerId":${b.id}}' ${sy.url}/api/v1/devices/${demo[0]}/broker`,
      `    curl -s -H "Authorization: Bearer ${tokenExpr}" ${sy.url}/api/v1/devices/${demo[0]}/migrations`,
    );
  }
  out.push('', '  Ctrl-C stops it; the next start reuses the data.', '');
  process.stdout.write(out.join('\n') + '\n');
}
