import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * Secrets Cordon must keep but not store in the clear — an invitation's accept URL in its event
 * (it holds the token), webhook signing secrets — are sealed with AES-256-GCM under a key derived
 * from the service's admin key, so a copy of the database alone cannot use them; they are opened
 * just before use.
 */
export class EventSecrets {
  private readonly key: Buffer;

  constructor(serviceSecret: string) {
    this.key = createHmac('sha256', serviceSecret).update('cordon outbox secrets v1').digest();
  }

  seal(text: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.key, iv);
    const sealed = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
    return Buffer.concat([iv, cipher.getAuthTag(), sealed]).toString('base64url');
  }

  open(sealed: string): string {
    const bytes = Buffer.from(sealed, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', this.key, bytes.subarray(0, 12));
    decipher.setAuthTag(bytes.subarray(12, 28));
    return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
  }
}
