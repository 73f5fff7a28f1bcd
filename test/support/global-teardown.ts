import type { EmbeddedDatabase } from '../../src/db/embedded.ts';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { cordonEmbedded?: EmbeddedDatabase }).cordonEmbedded?.stop();
}
