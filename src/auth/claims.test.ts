import type { JWTPayload } from 'jose';
import { mapClaims, readClaim } from './claims.ts';

type Provider = Parameters<typeof mapClaims>[0];

const clerk = (overrides: Partial<Provider> = {}): Provider => ({
  type: 'clerk',
  claims: {},
  roleMap: {},
  ...overrides,
});
const auth0 = (overrides: Partial<Provider> = {}): Provider => ({
  type: 'auth0',
  claims: { roles: 'https://example.com/roles' },
  roleMap: {},
  ...overrides,
});
const oidc = (overrides: Partial<Provider> = {}): Provider => ({
  type: 'oidc',
  claims: { orgId: 'tenant.id', roles: 'tenant.roles' },
  roleMap: {},
  ...overrides,
});

describe('readClaim', () => {
  it('reads a top-level claim by its name', () => {
    expect(readClaim({ sub: 'user_1' }, 'sub')).toBe('user_1');
  });

  it('walks a dotted path through nested objects', () => {
    expect(readClaim({ o: { id: 'org_1', rol: 'admin' } }, 'o.rol')).toBe('admin');
    expect(readClaim({ a: { b: { c: 42 } } }, 'a.b.c')).toBe(42);
  });

  it('reads a whole claim name containing slashes without splitting it', () => {
    const payload = { 'https://example.com/roles': ['admin', 'viewer'] };
    expect(readClaim(payload, 'https://example.com/roles')).toEqual(['admin', 'viewer']);
  });

  it('never splits a path containing a slash on its dots', () => {
    const payload = { https: { '//example': { 'com/roles': ['admin'] } } };
    expect(readClaim(payload, 'https://example.com/roles')).toBeUndefined();
  });

  it('prefers a claim literally named with a dot over the nested path', () => {
    const payload = { 'org.id': 'whole-name', org: { id: 'nested' } };
    expect(readClaim(payload, 'org.id')).toBe('whole-name');
  });

  it('falls back to the nested path when no claim has the whole dotted name', () => {
    expect(readClaim({ org: { id: 'nested' } }, 'org.id')).toBe('nested');
  });

  it('returns undefined when an intermediate object is missing', () => {
    expect(readClaim({ o: { id: 'org_1' } }, 'x.y.z')).toBeUndefined();
    expect(readClaim({ o: { id: 'org_1' } }, 'o.missing.deeper')).toBeUndefined();
  });

  it('returns undefined when an intermediate value is not an object', () => {
    expect(readClaim({ o: 'org_1' }, 'o.id')).toBeUndefined();
    expect(readClaim({ o: null }, 'o.id')).toBeUndefined();
    expect(readClaim({ o: 7 }, 'o.id')).toBeUndefined();
  });

  it('does not walk into arrays by index or by property', () => {
    expect(readClaim({ roles: ['admin', 'viewer'] }, 'roles.0')).toBeUndefined();
    expect(readClaim({ roles: ['admin', 'viewer'] }, 'roles.length')).toBeUndefined();
    expect(readClaim({ orgs: [{ id: 'org_1' }] }, 'orgs.0.id')).toBeUndefined();
  });

  it('returns the array itself when the path ends on it', () => {
    expect(readClaim({ realm: { roles: ['admin'] } }, 'realm.roles')).toEqual(['admin']);
  });

  it('never reads __proto__ or constructor from the prototype', () => {
    const payload: Record<string, unknown> = { o: { id: 'org_1' } };
    expect(readClaim(payload, '__proto__')).toBeUndefined();
    expect(readClaim(payload, 'constructor')).toBeUndefined();
    expect(readClaim(payload, 'constructor.name')).toBeUndefined();
    expect(readClaim(payload, 'o.__proto__')).toBeUndefined();
    expect(readClaim(payload, 'o.constructor')).toBeUndefined();
    expect(readClaim(payload, 'o.toString')).toBeUndefined();
    expect(readClaim(payload, 'hasOwnProperty')).toBeUndefined();
  });

  it('never reads a claim inherited through the prototype chain', () => {
    const payload = Object.create({ inherited: 'from-prototype', nested: { id: 'x' } }) as Record<string, unknown>;
    payload.own = 'mine';
    expect(readClaim(payload, 'own')).toBe('mine');
    expect(readClaim(payload, 'inherited')).toBeUndefined();
    expect(readClaim(payload, 'nested.id')).toBeUndefined();
  });

  it('reads a __proto__ claim only when the token itself carries it as its own data', () => {
    const payload = JSON.parse('{"__proto__": {"role": "admin"}}') as Record<string, unknown>;
    expect(readClaim(payload, '__proto__.role')).toBe('admin');
    expect(({} as Record<string, unknown>).role).toBeUndefined();
  });

  it('returns undefined for a path with an empty segment', () => {
    expect(readClaim({ a: { b: 1 } }, 'a..b')).toBeUndefined();
  });
});

describe('mapClaims with the clerk preset', () => {
  it('reads a v1 token: org_id, and org_role without the org: prefix', () => {
    const payload: JWTPayload = { sub: 'user_2x', org_id: 'org_2abc', org_role: 'org:admin', email: 'ada@example.com' };
    expect(mapClaims(clerk(), payload)).toEqual({
      subject: 'user_2x',
      orgId: 'org_2abc',
      roles: ['admin'],
      email: 'ada@example.com',
    });
  });

  it('reads a v2 token: o.id and o.rol', () => {
    const payload: JWTPayload = {
      v: 2,
      sub: 'user_2x',
      o: { id: 'org_2abc', rol: 'admin', slg: 'acme', per: 'read,write' },
    };
    expect(mapClaims(clerk(), payload)).toEqual({
      subject: 'user_2x',
      orgId: 'org_2abc',
      roles: ['admin'],
      email: undefined,
    });
  });

  it('ignores v1 claims in a v2 token', () => {
    const payload: JWTPayload = {
      v: 2,
      sub: 'user_2x',
      org_id: 'org_v1',
      org_role: 'org:admin',
      o: { id: 'org_v2', rol: 'member' },
    };
    expect(mapClaims(clerk(), payload)).toMatchObject({ orgId: 'org_v2', roles: ['member'] });
  });

  it('strips the org: prefix from a v2 role too', () => {
    const payload: JWTPayload = { v: 2, sub: 'user_2x', o: { id: 'org_2abc', rol: 'org:member' } };
    expect(mapClaims(clerk(), payload).roles).toEqual(['member']);
  });

  it('strips only a leading org: prefix', () => {
    const payload: JWTPayload = { sub: 'user_2x', org_id: 'org_2abc', org_role: 'billing:org:admin' };
    expect(mapClaims(clerk(), payload).roles).toEqual(['billing:org:admin']);
  });

  it('applies the roleMap after stripping the prefix', () => {
    const payload: JWTPayload = { sub: 'user_2x', org_id: 'org_2abc', org_role: 'org:admin' };
    expect(mapClaims(clerk({ roleMap: { admin: 'owner' } }), payload).roles).toEqual(['owner']);
  });

  it('has no org and no roles for a personal-account token', () => {
    expect(mapClaims(clerk(), { sub: 'user_2x' })).toEqual({
      subject: 'user_2x',
      orgId: undefined,
      roles: [],
      email: undefined,
    });
  });

  it('lets configured claim paths override the preset', () => {
    const payload: JWTPayload = {
      sub: 'user_2x',
      org_id: 'org_preset',
      custom: { org: 'org_custom', role: 'org:viewer' },
    };
    const provider = clerk({ claims: { orgId: 'custom.org', roles: 'custom.role' } });
    expect(mapClaims(provider, payload)).toMatchObject({ orgId: 'org_custom', roles: ['viewer'] });
  });
});

describe('mapClaims with the auth0 preset', () => {
  it('reads org_id and the namespaced roles array named in the configuration', () => {
    const payload: JWTPayload = {
      sub: 'auth0|abc123',
      org_id: 'org_9yb',
      'https://example.com/roles': ['admin', 'member'],
      email: 'grace@example.com',
    };
    expect(mapClaims(auth0(), payload)).toEqual({
      subject: 'auth0|abc123',
      orgId: 'org_9yb',
      roles: ['admin', 'member'],
      email: 'grace@example.com',
    });
  });

  it('keeps an org: prefix, which only Clerk strips', () => {
    const payload: JWTPayload = { sub: 'auth0|abc123', org_id: 'org_9yb', 'https://example.com/roles': ['org:admin'] };
    expect(mapClaims(auth0(), payload).roles).toEqual(['org:admin']);
  });

  it('reads no roles without a configured roles claim', () => {
    const payload: JWTPayload = { sub: 'auth0|abc123', org_id: 'org_9yb', roles: ['admin'], org_role: 'admin' };
    expect(mapClaims(auth0({ claims: {} }), payload).roles).toEqual([]);
  });
});

describe('mapClaims with the oidc preset', () => {
  it('reads the organization and roles from the configured paths', () => {
    const payload: JWTPayload = { sub: 'f1c2', tenant: { id: 'acme', roles: ['editor'] }, email: 'linus@example.com' };
    expect(mapClaims(oidc(), payload)).toEqual({
      subject: 'f1c2',
      orgId: 'acme',
      roles: ['editor'],
      email: 'linus@example.com',
    });
  });

  it('reads nothing from the Clerk or Auth0 claim names', () => {
    const payload: JWTPayload = { sub: 'f1c2', org_id: 'org_1', org_role: 'admin', o: { id: 'org_2', rol: 'admin' } };
    expect(mapClaims(oidc({ claims: {} }), payload)).toEqual({
      subject: 'f1c2',
      orgId: undefined,
      roles: [],
      email: undefined,
    });
  });

  it('reads the subject and email from custom paths', () => {
    const payload: JWTPayload = {
      sub: 'ignored',
      user: { id: 'u-42' },
      'https://example.com/email': 'custom@example.com',
      email: 'standard@example.com',
      tenant: { id: 'acme', roles: 'editor' },
    };
    const provider = oidc({
      claims: { subject: 'user.id', email: 'https://example.com/email', orgId: 'tenant.id', roles: 'tenant.roles' },
    });
    expect(mapClaims(provider, payload)).toEqual({
      subject: 'u-42',
      orgId: 'acme',
      roles: ['editor'],
      email: 'custom@example.com',
    });
  });
});

describe('mapClaims roles', () => {
  const payloadWith = (roles: unknown): JWTPayload => ({ sub: 'f1c2', tenant: { id: 'acme', roles } });

  it('maps a role to one role', () => {
    expect(mapClaims(oidc({ roleMap: { editor: 'member' } }), payloadWith(['editor'])).roles).toEqual(['member']);
  });

  it('maps a role to several roles', () => {
    expect(mapClaims(oidc({ roleMap: { owner: ['admin', 'auditor'] } }), payloadWith(['owner'])).roles).toEqual([
      'admin',
      'auditor',
    ]);
  });

  it('passes unmapped roles through unchanged', () => {
    const roles = mapClaims(oidc({ roleMap: { editor: 'member' } }), payloadWith(['viewer', 'editor'])).roles;
    expect(roles).toEqual(['viewer', 'member']);
  });

  it('removes duplicates produced by the mapping', () => {
    const provider = oidc({ roleMap: { editor: 'member', writer: ['member', 'viewer'] } });
    expect(mapClaims(provider, payloadWith(['editor', 'writer', 'viewer', 'member'])).roles).toEqual([
      'member',
      'viewer',
    ]);
  });

  it('removes duplicates in the token itself', () => {
    expect(mapClaims(oidc(), payloadWith(['admin', 'admin'])).roles).toEqual(['admin']);
  });

  it('drops a role mapped to no roles', () => {
    expect(mapClaims(oidc({ roleMap: { guest: [] } }), payloadWith(['guest', 'viewer'])).roles).toEqual(['viewer']);
  });

  it('does not look role names up on the roleMap prototype', () => {
    expect(mapClaims(oidc({ roleMap: {} }), payloadWith(['constructor', 'toString'])).roles).toEqual([
      'constructor',
      'toString',
    ]);
  });

  it('ignores non-string and empty role values', () => {
    expect(
      mapClaims(oidc(), payloadWith(['admin', 7, null, { role: 'x' }, ['nested'], '', true, 'viewer'])).roles,
    ).toEqual(['admin', 'viewer']);
  });

  it('ignores a roles claim that is neither a string nor an array', () => {
    expect(mapClaims(oidc(), payloadWith(42)).roles).toEqual([]);
    expect(mapClaims(oidc(), payloadWith({ admin: true })).roles).toEqual([]);
    expect(mapClaims(oidc(), payloadWith('')).roles).toEqual([]);
  });

  it('reads a single string role as one role', () => {
    expect(mapClaims(oidc(), payloadWith('admin')).roles).toEqual(['admin']);
  });
});

describe('mapClaims scalar claims', () => {
  it('ignores a subject, organization or email that is not a non-empty string', () => {
    const payload = { sub: 12345, tenant: { id: '', roles: [] }, email: ['a@example.com'] } as unknown as JWTPayload;
    expect(mapClaims(oidc(), payload)).toEqual({ subject: undefined, orgId: undefined, roles: [], email: undefined });
  });
});

describe('mapClaims and text PostgreSQL cannot store', () => {
  it('treats a subject, organization or email containing NUL as absent, and drops such roles', () => {
    const payload = {
      sub: 'user\u0000x',
      tenant: { id: 'acme\u0000', roles: ['admin\u0000', 'viewer'] },
      email: 'a\u0000@example.com',
    } as unknown as JWTPayload;
    expect(mapClaims(oidc(), payload)).toEqual({
      subject: undefined,
      orgId: undefined,
      roles: ['viewer'],
      email: undefined,
    });
    expect(
      mapClaims(oidc(), { sub: 'u', tenant: { id: 'acme', roles: 'admin\u0000' } } as unknown as JWTPayload).roles,
    ).toEqual([]);
  });

  it('treats a lone surrogate like NUL', () => {
    const payload = {
      sub: 'user\ud800',
      tenant: { id: 'acme', roles: ['\udc00admin', 'viewer'] },
    } as unknown as JWTPayload;
    expect(mapClaims(oidc(), payload)).toMatchObject({ subject: undefined, orgId: 'acme', roles: ['viewer'] });
  });
});
