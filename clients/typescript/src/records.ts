import type { paths } from './schema.ts';

type RecordOperation = paths['/v1/workspaces/{ws}/records/{structure}/{id}'];
type Shape = RecordOperation['get']['responses'][200]['content']['application/json'];

/** A record's fields when you give no type of your own (an interface of yours will do). */
export type RecordData = Record<string, unknown>;

/** A record as the REST API returns it; its ETag is `"<version>"`. */
export type CordonRecord<Data extends object = RecordData> = Omit<Shape, 'data'> & { data: Data };

/** A MongoDB-style query over the record's fields and its system fields (`id`, `createdBy`, `createdAt`, `updatedAt`). */
export type Filter = Record<string, unknown>;

export interface RecordQuery {
  filter?: Filter;
  /** Comma-separated fields, `-` for descending, e.g. `-createdAt` (the default) or `status,-updatedAt`. */
  sort?: string;
  /** Page size, 1 to 200 (default 50). */
  limit?: number;
  /** `nextCursor` of the previous page, with the same filter and sort. */
  cursor?: string;
  /** Also count every matching record the principal may read. */
  count?: boolean;
}

export interface RecordPage<Data extends object = RecordData> {
  data: CordonRecord<Data>[];
  nextCursor: string | null;
  /** Present when the query asked for `count`. */
  count?: number;
}

/** A JSON merge patch (RFC 7396) of the record's fields: `null` removes a field. */
export type RecordPatch<Data extends object = RecordData> = { [Field in keyof Data]?: Data[Field] | null };

export interface Precondition {
  /** The version (or ETag) the change expects; a record changed since is refused with 412 `precondition_failed`. */
  ifMatch?: number | string;
}

type ListParameters = NonNullable<paths['/v1/workspaces/{ws}/records/{structure}']['get']['parameters']['query']>;

export function listParameters(query: RecordQuery): ListParameters {
  return {
    ...(query.filter !== undefined && { filter: JSON.stringify(query.filter) }),
    ...(query.sort !== undefined && { sort: query.sort }),
    ...(query.limit !== undefined && { limit: query.limit }),
    ...(query.cursor !== undefined && { cursor: query.cursor }),
    ...(query.count !== undefined && { count: query.count ? 'true' : 'false' }),
  };
}

export const ifMatchHeader = ({ ifMatch }: Precondition = {}): Record<string, string> =>
  ifMatch === undefined ? {} : { 'If-Match': typeof ifMatch === 'number' ? `"${ifMatch}"` : ifMatch };
