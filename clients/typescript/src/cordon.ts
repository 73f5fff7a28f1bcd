import createClient from 'openapi-fetch';
import type { Client } from 'openapi-fetch';
import { CordonError, isTokenProblem, problemOf } from './errors.ts';
import { Realtime, type RealtimeTuning } from './realtime.ts';
import {
  ifMatchHeader,
  listParameters,
  type CordonRecord,
  type Precondition,
  type RecordData,
  type RecordPage,
  type RecordPatch,
  type RecordQuery,
} from './records.ts';
import type { paths } from './schema.ts';
import { TokenSource, type Token } from './token.ts';

type CheckOperation = paths['/v1/workspaces/{ws}/check']['post'];
type CheckBody = CheckOperation['requestBody']['content']['application/json'];
/** `resource`: the fields (and system fields) that the rules' conditions read, e.g. a record's `data`. */
export type Check = Omit<CheckBody['checks'][number], 'resource'> & { resource?: object };
export type NamedPrincipal = NonNullable<CheckBody['principal']>;
export type CheckResult = CheckOperation['responses'][200]['content']['application/json']['results'][number];
export type Principal = paths['/v1/workspaces/{ws}/whoami']['get']['responses'][200]['content']['application/json'];

export interface CordonOptions {
  /** Where Cordon serves, e.g. `https://cordon.example.com`. */
  baseUrl: string;
  /** The workspace's slug (or id). */
  workspace: string;
  token: Token;
  /** A fetch to use instead of the global one (a proxy's, a test's). */
  fetch?: typeof globalThis.fetch;
  /** Reconnection timing of realtime streams. */
  realtime?: Partial<RealtimeTuning>;
}

interface Answer<Data> {
  data?: Data;
  error?: unknown;
  response: Response;
}

/** Cordon for one workspace, as one principal: records, realtime events, checks. */
export class Cordon {
  readonly workspace: string;
  readonly realtime: Realtime;
  private readonly http: Client<paths>;
  private readonly token: TokenSource;

  constructor(options: CordonOptions) {
    const baseUrl = options.baseUrl.replace(/\/+$/, '');
    const fetchWith = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.workspace = options.workspace;
    this.token = new TokenSource(options.token);
    this.http = createClient<paths>({ baseUrl, fetch: (request) => fetchWith(request) });
    this.realtime = new Realtime({
      url: `${baseUrl}/v1/workspaces/${encodeURIComponent(this.path().ws)}/events`,
      token: this.token,
      fetch: fetchWith,
      tuning: options.realtime,
    });
  }

  async queryRecords<Data extends object = RecordData>(
    structure: string,
    query: RecordQuery = {},
  ): Promise<RecordPage<Data>> {
    return (await this.send((headers) =>
      this.http.GET('/v1/workspaces/{ws}/records/{structure}', {
        params: { path: this.path(structure), query: listParameters(query) },
        headers,
      }),
    )) as RecordPage<Data>;
  }

  /** Every record of the query, page after page (`limit` is the page size). */
  async *records<Data extends object = RecordData>(
    structure: string,
    query: Omit<RecordQuery, 'count'> = {},
  ): AsyncGenerator<CordonRecord<Data>, void, undefined> {
    let cursor = query.cursor;
    do {
      const page = await this.queryRecords<Data>(structure, { ...query, cursor });
      yield* page.data;
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
  }

  async getRecord<Data extends object = RecordData>(structure: string, id: string): Promise<CordonRecord<Data>> {
    return (await this.send((headers) =>
      this.http.GET('/v1/workspaces/{ws}/records/{structure}/{id}', {
        params: { path: this.path(structure, id) },
        headers,
      }),
    )) as CordonRecord<Data>;
  }

  async createRecord<Data extends object = RecordData>(structure: string, data: Data): Promise<CordonRecord<Data>> {
    return (await this.send((headers) =>
      this.http.POST('/v1/workspaces/{ws}/records/{structure}', {
        params: { path: this.path(structure) },
        body: { data: data as RecordData },
        headers,
      }),
    )) as CordonRecord<Data>;
  }

  async updateRecord<Data extends object = RecordData>(
    structure: string,
    id: string,
    patch: RecordPatch<Data>,
    precondition: Precondition = {},
  ): Promise<CordonRecord<Data>> {
    return (await this.send((headers) =>
      this.http.PATCH('/v1/workspaces/{ws}/records/{structure}/{id}', {
        params: { path: this.path(structure, id) },
        body: { data: patch as RecordData },
        headers: { ...headers, ...ifMatchHeader(precondition) },
      }),
    )) as CordonRecord<Data>;
  }

  async deleteRecord(structure: string, id: string, precondition: Precondition = {}): Promise<void> {
    await this.send((headers) =>
      this.http.DELETE('/v1/workspaces/{ws}/records/{structure}/{id}', {
        params: { path: this.path(structure, id) },
        headers: { ...headers, ...ifMatchHeader(precondition) },
      }),
    );
  }

  /** Decisions without data access, in order; admins may ask for a `principal` they name. */
  async check(checks: Check[], options: { principal?: NamedPrincipal } = {}): Promise<CheckResult[]> {
    const answer = await this.send((headers) =>
      this.http.POST('/v1/workspaces/{ws}/check', {
        params: { path: this.path() },
        body: { checks: checks as CheckBody['checks'], ...(options.principal && { principal: options.principal }) },
        headers,
      }),
    );
    return answer.results;
  }

  /** The principal Cordon resolved from the token: its id, roles and claims. */
  async whoami(): Promise<Principal> {
    return this.send((headers) =>
      this.http.GET('/v1/workspaces/{ws}/whoami', { params: { path: this.path() }, headers }),
    );
  }

  private path(): { ws: string };
  private path(structure: string): { ws: string; structure: string };
  private path(structure: string, id: string): { ws: string; structure: string; id: string };
  private path(structure?: string, id?: string) {
    const segments = {
      ws: this.workspace,
      ...(structure !== undefined && { structure }),
      ...(id !== undefined && { id }),
    };
    // URLs collapse "." and ".." (encodeURIComponent leaves dots alone): such a name or id from
    // user input would send the request to another route (GET …/records/Task/. lists, say). A
    // value that is not a string (an array from a JSON body) is joined or emptied likewise.
    for (const [name, value] of Object.entries(segments) as [string, unknown][]) {
      if (typeof value !== 'string' || value === '' || value === '.' || value === '..') {
        const detail = `${name} must be a string other than "", "." and ".."`;
        throw new CordonError({
          status: 400,
          code: 'validation_failed',
          title: 'The request params are invalid',
          detail,
          errors: [{ pointer: `/${name}`, in: 'params', detail }],
        });
      }
    }
    return segments;
  }

  /** One call with the current token; a refused token is renewed once and the call repeated. */
  private async send<Data>(call: (headers: Record<string, string>) => Promise<Answer<Data>>): Promise<Data> {
    let answer = await call(await this.token.headers());
    if (!answer.response.ok && this.token.renewable && isTokenProblem(this.refusal(answer))) {
      answer = await call(await this.token.headers(true));
    }
    if (!answer.response.ok) throw this.refusal(answer);
    return answer.data as Data;
  }

  private refusal(answer: Answer<unknown>): CordonError {
    return new CordonError(problemOf(answer.response, answer.error));
  }
}
