import type { JWTPayload } from 'jose';

/** Who acts: the contract's Principal. `id` is the token's `sub`, never assumed to be a uuid. */
export interface Principal {
  id: string;
  workspaceId: string;
  roles: string[];
  provider: string;
  email?: string;
  claims: JWTPayload;
}
