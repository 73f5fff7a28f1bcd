import type { Response } from 'express';
import type { Api } from '../../http/api.ts';
import type { AccessControl } from '../../policy/access.ts';
import type { RecordsService } from './records.service.ts';
import {
  createRecordBody,
  listQuery,
  patchRecordBody,
  recordListResponse,
  recordParams,
  recordResponse,
  recordsParams,
  type RecordResponse,
} from './records.schema.ts';

const tag = 'Records';
const sendRecord = (response: Response, record: RecordResponse, status = 200) =>
  response.status(status).setHeader('ETag', `"${record.version}"`).json(record);

/** Records are a workspace principal's business only: the platform admin reads no tenant data. */
export function recordRoutes(api: Api, records: RecordsService, access: AccessControl): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/records/:structure',
      tag,
      security: 'bearer',
      summary: 'List records the principal may read, filtered and paged in SQL (filter, sort, limit, cursor, count)',
      params: recordsParams,
      query: listQuery,
      responses: { 200: { description: 'A page of records', schema: recordListResponse } },
    },
    async ({ params, query }, request, response) => {
      response.type('json').send(await records.listText(await access.principalOf(request), params.structure, query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/records/:structure',
      tag,
      security: 'bearer',
      summary: 'Create a record; validated against the structure and checked by policy on the new record',
      params: recordsParams,
      body: createRecordBody,
      responses: { 201: { description: 'Created; ETag is the version', schema: recordResponse } },
    },
    async ({ params, body }, request, response) => {
      const record = await records.create(await access.principalOf(request), params.structure, body.data);
      sendRecord(
        response.location(`/v1/workspaces/${params.ws}/records/${params.structure}/${record.id}`),
        record,
        201,
      );
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/records/:structure/:id',
      tag,
      security: 'bearer',
      summary: 'Get a record; fields the principal may not read are left out',
      params: recordParams,
      responses: { 200: { description: 'The record; ETag is the version', schema: recordResponse } },
    },
    async ({ params }, request, response) => {
      sendRecord(response, await records.get(await access.principalOf(request), params.structure, params.id));
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/v1/workspaces/:ws/records/:structure/:id',
      tag,
      security: 'bearer',
      summary:
        "Merge-patch a record's data (RFC 7396); allowed only if policy allows it before and after; If-Match for optimistic concurrency",
      params: recordParams,
      body: patchRecordBody,
      responses: { 200: { description: 'The new version; ETag is the version', schema: recordResponse } },
    },
    async ({ params, body }, request, response) => {
      sendRecord(
        response,
        await records.update(
          await access.principalOf(request),
          params.structure,
          params.id,
          body.data,
          request.get('if-match'),
        ),
      );
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/records/:structure/:id',
      tag,
      security: 'bearer',
      summary: 'Delete a record; If-Match for optimistic concurrency',
      params: recordParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params }, request, response) => {
      await records.remove(await access.principalOf(request), params.structure, params.id, request.get('if-match'));
      response.status(204).end();
    },
  );
}
