/**
 * Polls `check` until it holds, for what another instance learns through LISTEN/NOTIFY or the
 * background finishes; generous, since CI shares a 2-core machine with other work.
 */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
