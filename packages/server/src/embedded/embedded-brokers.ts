/**
 * Registers the embedded brokers ("broker-a" on 1883, "broker-b" on 1884, …) on first start and
 * keeps their records in step with the ports of this start. The server's account on them is
 * stored like any broker password: encrypted with the secret box.
 */
import type { Db } from '../db/db.ts';
import type { Logger } from '../log.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import { EMBEDDED_SERVER_USERNAME, embeddedServerPassword } from './embedded-auth.ts';

export async function registerEmbeddedBrokers(
  db: Db,
  secretBox: SecretBox,
  secretKey: Buffer,
  brokers: Array<{ name: string; host: string; port: number }>,
  log: Logger,
): Promise<number[]> {
  const passwordEnc = secretBox.encrypt(embeddedServerPassword(secretKey));
  const ids: number[] = [];
  for (const b of brokers) {
    const { rows } = await db.query<{ id: number; inserted: boolean }>(
      `INSERT INTO mqtt_broker_config (name, protocol, host, port, protocol_version, status, username, password_enc, provisioner)
       VALUES ($1, 'mqtt', $2, $3, 4, 'active', $4, $5, 'embedded')
       ON CONFLICT (name) DO UPDATE
          SET host = EXCLUDED.host, port = EXCLUDED.port, username = EXCLUDED.username,
              password_enc = EXCLUDED.password_enc, updated_at = now()
        WHERE mqtt_broker_config.provisioner = 'embedded'
       RETURNING id, (xmax = 0) AS inserted`,
      [b.name, b.host, b.port, EMBEDDED_SERVER_USERNAME, passwordEnc],
    );
    const row = rows[0];
    if (!row) {
      throw new Error(`a broker named ${b.name} exists and is not an embedded broker; rename it or set SWITCHYARD_EMBEDDED_BROKERS=none`);
    }
    if (row.inserted) log.info({ brokerId: row.id, broker: b.name, port: b.port }, 'registered embedded broker');
    ids.push(row.id);
  }
  return ids;
}
