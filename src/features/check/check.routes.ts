import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';
import type { Api } from '../../http/api.ts';
import { ProblemError } from '../../http/errors.ts';
import type { AccessControl } from '../../policy/access.ts';
import { subjectTypeKey } from '../../policy/ability.ts';
import type { PolicyStore } from '../../policy/policy-store.ts';
import { explain } from '../../policy/explain.ts';
import { actions, isSystemSubject } from '../../policy/vocabulary.ts';
import type { DecisionEntry } from '../../policy/decision-log.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';

const maxChecks = 100;

const checkBody = z.strictObject({
  principal: z
    .strictObject({
      id: z.string().min(1).max(500),
      roles: z.array(z.string().min(1).max(100)).max(50),
      email: z.email().optional(),
      claims: refusingProtoKey(z.record(z.string(), z.unknown())).default({}),
    })
    .optional(),
  checks: z
    .array(
      z.strictObject({
        action: z.enum(actions),
        subject: z.string().min(1).max(64),
        resource: refusingProtoKey(
          z.record(
            z.string().refine((key) => key !== subjectTypeKey, 'is reserved'),
            z.unknown(),
          ),
        ).optional(),
        field: z.string().min(1).max(200).optional(),
      }),
    )
    .min(1)
    .max(maxChecks),
  // Explanations are computed only when asked for: the decisions themselves never pay for them.
  explain: z.boolean().default(false),
});

const ruleReference = z.object({ policyId: z.uuid(), policyName: z.string(), ruleIndex: z.number().int() });

const explanation = z.object({
  rules: z.array(
    ruleReference.extend({
      action: z.union([z.string(), z.array(z.string())]),
      subject: z.union([z.string(), z.array(z.string())]),
      effect: z.enum(['allow', 'deny']),
      applies: z.boolean(),
      matched: z.boolean().nullable(),
      failed: z
        .array(
          z.object({
            field: z.string(),
            operator: z.string(),
            expected: z.unknown(),
            actual: z.unknown().optional(),
            why: z.enum(['missing', 'type', 'value']),
          }),
        )
        .optional(),
    }),
  ),
  decidedBy: ruleReference.nullable(),
  reason: z.string(),
});

const checkResponse = z.object({
  results: z.array(
    z.object({
      allowed: z.boolean(),
      policyId: z.uuid().nullable(),
      policyVersion: z.number().int().nullable(),
      ruleIndex: z.number().int().nullable(),
      reason: z.string(),
      explanation: explanation.optional(),
    }),
  ),
});

/**
 * Decisions without data access: "may this principal do that?", answered with the deciding
 * rule, and logged like every other decision before the answer leaves.
 */
export function checkRoutes(api: Api, policies: PolicyStore, access: AccessControl): void {
  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/check',
      summary: 'Batch authorization decisions, for yourself or (admins) a named principal',
      tag: 'Decisions',
      security: 'bearer',
      params: workspaceParams,
      body: checkBody,
      responses: { 200: { description: 'One result per check, in order', schema: checkResponse } },
    },
    async ({ body }, request, response) => {
      const caller = await access.principalOf(request);
      let { ability, context } = caller;
      if (body.principal) {
        // Naming another principal reveals what it may do: only those who manage policies may.
        const authority = ability.decide('manage', 'Policy');
        if (!authority.allowed) {
          await access.decided(caller, [
            { action: 'manage', operation: 'check', subject: 'Policy', decision: authority },
          ]);
          throw new ProblemError('forbidden', 'Only principals who manage policies may check for another principal');
        }
        const named = { ...body.principal, provider: `named by ${caller.principal.id}` };
        const workspace = request.workspace!;
        const scope = { workspaceId: workspace.id, policySetVersion: workspace.policySetVersion };
        ability = await policies.abilityFor(named, scope);
        context = { ...context, principal: named, attributes: await access.attributesOf(named, scope) };
      }
      const entries: DecisionEntry[] = body.checks.map((check) => {
        const resourceId = check.resource && typeof check.resource.id === 'string' ? check.resource.id : null;
        return {
          action: check.action,
          operation: 'check',
          subject: check.subject,
          resourceId,
          fields: check.field ? [check.field] : null,
          documents: check.resource ? [check.resource] : undefined,
          decision: ability.decide(check.action, check.subject, check.resource, check.field),
        };
      });
      await access.decided({ context }, entries);
      if (!body.explain) {
        response.json({ results: entries.map((entry) => entry.decision) });
        return;
      }
      const explained = body.checks.map((check, index) => {
        const { decision } = entries[index]!;
        // A system subject is decided at the type level whatever the check names (see `decide`):
        // explained so too, or conditional rules would show as matching the resource.
        const typeLevel = isSystemSubject(check.subject);
        return {
          ...decision,
          explanation: typeLevel
            ? explain(ability, decision, check.action, check.subject)
            : explain(ability, decision, check.action, check.subject, check.resource, check.field),
        };
      });
      response.json({ results: explained });
    },
  );
}
