/**
 * A bearer token, or a function that returns the current one, like Clerk's `getToken`. The
 * function is called for every request and stream connection; when Cordon refuses a token it is
 * called once more with `{ skipCache: true }` (Clerk then mints a new one; others may ignore it).
 */
export type Token =
  string | ((options?: { skipCache?: boolean }) => string | null | undefined | Promise<string | null | undefined>);

export class TokenSource {
  private readonly token: Token;

  constructor(token: Token) {
    this.token = token;
  }

  /** A static string cannot be renewed: retrying it would only be refused again. */
  get renewable(): boolean {
    return typeof this.token === 'function';
  }

  async get(renew = false): Promise<string | undefined> {
    if (typeof this.token === 'string') return this.token;
    return (await this.token(renew ? { skipCache: true } : undefined)) ?? undefined;
  }

  async headers(renew = false): Promise<Record<string, string>> {
    const token = await this.get(renew);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }
}
