import { stringify } from 'csv-stringify/sync';
import type { Api } from '../../http/api.ts';
import { writeWithBackpressure } from '../../http/backpressure.ts';
import type { AccessControl } from '../../policy/access.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { DecisionReader } from './decision-reader.ts';
import {
  checkpointListResponse,
  checkpointsQuery,
  decisionListResponse,
  exportDecisionsQuery,
  listDecisionsQuery,
  publicKeyResponse,
  verifyResponse,
  type DecisionResponse,
} from './decisions.schema.ts';
import type { SigningKey } from './signing.ts';

const tag = 'Decision log';
const authorize = { action: 'read', subject: 'DecisionLog', operation: 'admin' } as const;

const csvColumns = [
  'id',
  'at',
  'seq',
  'hash',
  'requestId',
  'principalId',
  'principalRoles',
  'principalProvider',
  'action',
  'operation',
  'subject',
  'resourceId',
  'fields',
  'allowed',
  'policyId',
  'policyVersion',
  'ruleIndex',
  'reason',
  'latencyMicros',
  'ip',
  'userAgent',
];

/**
 * A spreadsheet runs a cell that starts with = + - @ (or a tab or carriage return) as a formula,
 * and `resourceId`, user agents and subjects are attacker-chosen text: such a cell is prefixed
 * with an apostrophe, which spreadsheets show as text (OWASP's CSV injection advice).
 */
export const neutralised = (cell: unknown): unknown =>
  typeof cell === 'string' && /^[=+\-@\t\r]/.test(cell) ? `'${cell}` : cell;

const csvRecord = (decision: DecisionResponse) => csvCells(decision).map(neutralised);

const csvCells = (decision: DecisionResponse) => [
  decision.id,
  decision.at,
  decision.seq,
  decision.hash,
  decision.requestId,
  decision.principal.id,
  decision.principal.roles.join(' '),
  decision.principal.provider,
  decision.action,
  decision.operation,
  decision.subject,
  decision.resourceId,
  decision.fields?.join(' ') ?? null,
  decision.allowed,
  decision.policyId,
  decision.policyVersion,
  decision.ruleIndex,
  decision.reason,
  decision.latencyMicros,
  decision.ip,
  decision.userAgent,
];

export function decisionRoutes(api: Api, reader: DecisionReader, access: AccessControl, key: SigningKey): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/decisions',
      summary: 'Query the decision log, newest first',
      tag,
      security: 'adminOrBearer',
      authorize,
      params: workspaceParams,
      query: listDecisionsQuery,
      responses: { 200: { description: 'A page of decisions', schema: decisionListResponse } },
    },
    async ({ query: { limit, cursor, count, ...filters }, caller }, _request, response) => {
      response.json(
        await access.read(caller, () => reader.list(caller.workspaceId, filters, { limit, cursor, count })),
      );
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/decisions/export',
      summary: 'Stream the decision log out (NDJSON or CSV), oldest first',
      tag,
      security: 'adminOrBearer',
      authorize,
      params: workspaceParams,
      query: exportDecisionsQuery,
      responses: { 200: { description: 'The decisions', contentType: 'application/x-ndjson' } },
    },
    async ({ query: { format, ...filters }, caller }, _request, response) => {
      // The export's decision is durable before its first byte leaves.
      await access.read(caller, async () => undefined);
      response.status(200).type(format === 'csv' ? 'text/csv' : 'application/x-ndjson');
      response.setHeader(
        'Content-Disposition',
        `attachment; filename="decisions.${format === 'csv' ? 'csv' : 'ndjson'}"`,
      );
      if (format === 'csv') await writeWithBackpressure(response, stringify([csvColumns]));
      await reader.export(caller.workspaceId, filters, (rows) =>
        writeWithBackpressure(
          response,
          format === 'csv'
            ? stringify(rows.map(csvRecord), { cast: { boolean: String } })
            : rows.map((row) => JSON.stringify(row)).join('\n') + '\n',
        ),
      );
      response.end();
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/decisions/verify',
      summary: 'Recompute the hash chain and check the signed checkpoints',
      tag,
      security: 'adminOrBearer',
      authorize,
      params: workspaceParams,
      responses: { 200: { description: 'The verdict', schema: verifyResponse } },
    },
    async ({ caller }, _request, response) => {
      response.json(await access.read(caller, () => reader.verify(caller.workspaceId, key)));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/decisions/checkpoints',
      summary: 'The signed checkpoints with their chain heads, oldest first (JSON pages, or all as NDJSON)',
      tag,
      security: 'adminOrBearer',
      authorize,
      params: workspaceParams,
      query: checkpointsQuery,
      responses: {
        200: {
          description: 'A page of checkpoints; with format=ndjson, every checkpoint after cursor, one a line',
          schema: checkpointListResponse,
        },
      },
    },
    async ({ query: { format, limit, cursor, count }, caller }, _request, response) => {
      if (format === 'json') {
        response.json(
          await access.read(caller, () => reader.checkpoints(caller.workspaceId, { limit, cursor, count })),
        );
        return;
      }
      // Like the export: the decision is durable before the first byte leaves.
      const after = await access.read(caller, async () => reader.checkpointsAfter(cursor));
      response.status(200).type('application/x-ndjson');
      response.setHeader('Content-Disposition', 'attachment; filename="checkpoints.ndjson"');
      await reader.exportCheckpoints(caller.workspaceId, after, (checkpoints) =>
        writeWithBackpressure(response, checkpoints.map((checkpoint) => JSON.stringify(checkpoint)).join('\n') + '\n'),
      );
      response.end();
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/decisions/public-key',
      summary: 'The Ed25519 key that signs checkpoints, and the earlier ones, to verify offline',
      tag,
      security: 'adminOrBearer',
      authorize,
      params: workspaceParams,
      responses: { 200: { description: 'The public keys', schema: publicKeyResponse } },
    },
    async ({ caller }, _request, response) => {
      response.json(await access.read(caller, () => reader.publicKeys(key)));
    },
  );
}
