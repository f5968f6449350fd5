/**
 * Secrets at rest (broker passwords): AES-256-GCM with a random 12-byte IV per value.
 *
 * Text format, versioned so the scheme can change without a flag day:
 *   `v1.<iv, base64url>.<auth tag (16 bytes), base64url>.<ciphertext, base64url>`
 *
 * The key comes from `SWITCHYARD_SECRET` (scrypt with a fixed salt: the same passphrase gives the same key on
 * every instance) or, without it, from `<dataDir>/secret.key` (32 random bytes, base64, mode 0600), created at
 * first start. Losing or changing the key makes stored broker passwords undecryptable — set them again.
 */
import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';

export interface SecretBox {
  /** Encrypts a UTF-8 string; every call gives a different ciphertext. */
  encrypt(plain: string): string;
  /** Decrypts a value made by {@link SecretBox.encrypt} with the same key; throws {@link SecretBoxError} otherwise. */
  decrypt(enc: string): string;
}

/** A value cannot be decrypted: malformed, another key, or tampered with. Never carries the value. */
export class SecretBoxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SecretBoxError';
  }
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** Fixed salt: the key must be reproducible from the passphrase alone (several instances, restarts). */
const SCRYPT_SALT = 'switchyard/secret-box/v1';
const KEY_FILE = 'secret.key';

export function createSecretBox(key: Buffer): SecretBox {
  if (key.length !== KEY_BYTES) throw new SecretBoxError(`secret-box key must be ${KEY_BYTES} bytes, got ${key.length}`);
  const k = Buffer.from(key);
  return {
    encrypt(plain) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', k, iv);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      const tag = cipher.getAuthTag();
      return [VERSION, iv.toString('base64url'), tag.toString('base64url'), body.toString('base64url')].join('.');
    },
    decrypt(enc) {
      const parts = enc.split('.');
      if (parts.length !== 4 || parts[0] !== VERSION) {
        throw new SecretBoxError(`encrypted value is not in the ${VERSION} format`);
      }
      const iv = Buffer.from(parts[1] ?? '', 'base64url');
      const tag = Buffer.from(parts[2] ?? '', 'base64url');
      const body = Buffer.from(parts[3] ?? '', 'base64url');
      if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
        throw new SecretBoxError('encrypted value has a malformed IV or authentication tag');
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', k, iv);
        decipher.setAuthTag(tag);
        return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
      } catch (err) {
        // GCM authentication failed: another key (SWITCHYARD_SECRET or secret.key changed) or tampering.
        throw new SecretBoxError(`cannot decrypt: the key differs from the one that encrypted it, or the value was altered (${(err as Error).message})`);
      }
    },
  };
}

function deriveKey(secret: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(secret, SCRYPT_SALT, KEY_BYTES, { N: 1 << 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }, (err, key) => {
      if (err) reject(new SecretBoxError(`deriving the key from SWITCHYARD_SECRET failed: ${err.message}`));
      else resolve(key);
    });
  });
}

export interface LoadSecretKeyOptions {
  /** `SWITCHYARD_SECRET`; when set, the key is derived from it and no file is read or written. */
  secret?: string | undefined;
  /** Directory holding `secret.key` (created with mode 0700 if missing). */
  dataDir: string;
}

/** The 32-byte secret-box key: derived from `secret`, else read from (or created at) `<dataDir>/secret.key`. */
export async function loadOrCreateSecretKey(options: LoadSecretKeyOptions): Promise<Buffer> {
  if (options.secret !== undefined && options.secret !== '') return deriveKey(options.secret);

  const file = path.join(options.dataDir, KEY_FILE);
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const fresh = randomBytes(KEY_BYTES);
  try {
    // 'wx' fails if the file exists, so two processes starting at once cannot overwrite each other's key.
    await writeFile(file, `${fresh.toString('base64')}\n`, { flag: 'wx', mode: 0o600 });
    await chmod(file, 0o600); // the umask may have narrowed the mode further, never widened; make it exact
    return fresh;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new SecretBoxError(`cannot create ${file}: ${(err as Error).message}`);
    }
  }
  const text = await readFile(file, 'utf8').catch((err: unknown) => {
    throw new SecretBoxError(`cannot read ${file}: ${(err as Error).message}`);
  });
  const key = Buffer.from(text.trim(), 'base64');
  if (key.length !== KEY_BYTES) {
    throw new SecretBoxError(`${file} must hold ${KEY_BYTES} bytes in base64, found ${key.length}; restore it from a backup or set SWITCHYARD_SECRET`);
  }
  return key;
}
