/**
 * Credentials for the embedded Aedes brokers: the server's own account (a password derived from
 * the secret key, so it survives restarts without being stored in clear) and devices
 * (username = uuid, password = device token, checked against the stored hash).
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../db/db.ts';
import { hashToken } from '../auth/tokens.ts';
import type { EmbeddedAuth } from './aedes-broker.ts';

export const EMBEDDED_SERVER_USERNAME = 'switchyard-server';

export function embeddedServerPassword(secretKey: Buffer): string {
  return createHmac('sha256', secretKey).update('switchyard embedded broker server account').digest('base64url');
}

export function createEmbeddedAuth(db: Queryable, secretKey: Buffer): EmbeddedAuth {
  const serverPassword = Buffer.from(embeddedServerPassword(secretKey));
  return {
    async authenticate(username, password) {
      if (username === EMBEDDED_SERVER_USERNAME) {
        const given = Buffer.from(password);
        return given.length === serverPassword.length && timingSafeEqual(given, serverPassword) ? { kind: 'server' } : null;
      }
      const { rows } = await db.query<{ uuid: string }>('SELECT uuid FROM devices WHERE uuid = $1 AND token_hash = $2', [
        username,
        hashToken(password),
      ]);
      return rows[0] ? { kind: 'device', deviceUuid: rows[0].uuid } : null;
    },
  };
}
