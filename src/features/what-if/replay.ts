import { asRecordSubject, ruleless, type Decision, type PrincipalAbility } from '../../policy/ability.ts';
import type { DecisionInputs } from '../../policy/decision-inputs.ts';
import { actions, type Action } from '../../policy/vocabulary.ts';
import type { DecisionRow } from '../decisions/chain.ts';
import { writeDecision } from '../records/record-view.ts';
import type { DraftAbilities } from './draft-abilities.ts';

/** A decision row as the replay reads it. */
export type LoggedDecision = Pick<
  DecisionRow,
  | 'id'
  | 'principal_id'
  | 'principal_roles'
  | 'principal_provider'
  | 'action'
  | 'operation'
  | 'subject'
  | 'resource_id'
  | 'fields'
  | 'allowed'
  | 'policy_id'
  | 'reason'
> & { at: Date; inputs: DecisionInputs | null };

/** Why a decision cannot be replayed; counted in `notReplayable.byReason`. */
export const notReplayableReasons = {
  platform_admin: 'taken with the platform admin key, outside tenant policy',
  not_decided_by_rules:
    'refused on other grounds than policy rules (a grant beyond the grantor, an invitation, a missing record)',
  logged_before_inputs: 'logged before decisions kept their inputs, and the drafts need them',
  principal_attributes_not_kept: 'the drafts use a placeholder whose value the decision did not keep',
  record_not_read: 'refused before the record was read, and the drafts would read it',
  record_too_large: 'the record did not fit the inputs budget',
  fields_not_kept: 'the drafts’ conditions read fields the decision did not keep',
  list_filter: 'a list: which rows it shows depends on the drafts’ conditions, not on one allow or deny',
  unknown_action: 'an action the policies do not know',
} as const;
export type NotReplayable = keyof typeof notReplayableReasons;

export type Replay = { decision: Decision } | { notReplayable: NotReplayable };

/** Refusals that name a rule's decision but were taken on other grounds (members/grants.ts). */
const refusalsBeyondRules = ['may only grant or take away roles held by the grantor'];

const isAction = (action: string): action is Action => (actions as readonly string[]).includes(action);

const denied = (reason: string): Decision => ruleless(false, reason);

/**
 * Replays one logged decision against the drafts, on what it was decided on: the row's principal
 * and roles, the kept placeholder values and record documents. The route's steps are those of the
 * services (records.service.ts, check.routes.ts, access.ts): the type-level check, then the
 * conditions on the record as it was (an update: before and after), then field rules. What the
 * decision did not keep and the drafts need makes it not replayable, never a guess.
 */
export function replay(row: LoggedDecision, drafts: DraftAbilities): Replay {
  if (row.principal_provider === 'admin-key') return { notReplayable: 'platform_admin' };
  if (!isAction(row.action)) return { notReplayable: 'unknown_action' };
  const action = row.action;
  const inputs = row.inputs;
  const ability = drafts.abilityFor(row.principal_id, row.principal_roles, inputs?.principal);
  if (!ability) return { notReplayable: inputs ? 'principal_attributes_not_kept' : 'logged_before_inputs' };
  if (row.operation === 'list') return replayList(row, ability);
  const otherGrounds =
    !row.allowed &&
    ((row.policy_id === null && row.reason !== 'default deny') ||
      refusalsBeyondRules.some((prefix) => row.reason.startsWith(prefix)));
  if (otherGrounds) return { notReplayable: 'not_decided_by_rules' };

  const field = row.fields?.[0];
  if (row.operation === 'check' && !inputs) return { notReplayable: 'logged_before_inputs' };
  if (row.operation === 'check' && !inputs?.documents && !inputs?.dropped) {
    // A check on a subject type, without a resource.
    return { decision: ability.decide(action, row.subject, undefined, field) };
  }
  if (row.operation === 'admin') return { decision: ability.decide(action, row.subject) };

  const typeLevel = ability.decide(action, row.subject);
  if (row.operation !== 'check' && !typeLevel.allowed) return { decision: typeLevel };
  if (!inputs) return { notReplayable: 'logged_before_inputs' };
  if (inputs.dropped) return { notReplayable: 'record_too_large' };
  const documents = inputs.documents;
  if (!documents?.length) {
    // Allowed and no record read: the request ended before one (a missing record, a create that
    // did not validate); the drafts' type-level allow leads to the same end. Refused then at the
    // type level, the record was never read, and the drafts would read it.
    return row.allowed ? { decision: typeLevel } : { notReplayable: 'record_not_read' };
  }
  if (inputs.kept) {
    const kept = new Set(inputs.kept);
    for (const name of drafts.fieldsRead(ability, action, row.subject))
      if (!kept.has(name)) return { notReplayable: 'fields_not_kept' };
  }
  return { decision: onDocuments(row, action, ability, documents, field) };
}

function onDocuments(
  row: LoggedDecision,
  action: Action,
  ability: PrincipalAbility,
  documents: Record<string, unknown>[],
  field: string | undefined,
): Decision {
  const states = documents.map((document) => ({ ...document }));
  switch (row.operation) {
    case 'check':
      return ability.decide(action, row.subject, states[0], field);
    case 'create':
      return writeDecision(ability, action, row.subject, targets(row.subject, states), row.fields ?? []);
    case 'update': {
      const before = ability.decide(action, row.subject, states[0]);
      if (!before.allowed || states.length < 2) return before;
      return writeDecision(ability, action, row.subject, targets(row.subject, states), row.fields ?? []);
    }
    default:
      return ability.decide(action, row.subject, states[0]);
  }
}

const targets = (subject: string, states: Record<string, unknown>[]) =>
  states.map((state) => asRecordSubject(subject, state));

/**
 * A list's decision is its type-level check and the fields it filters or sorts on; the rows it
 * shows are not an allow or deny. Still allowed under drafts whose read rules have conditions, it
 * cannot say whether it would show the same rows, and says so.
 */
function replayList(row: LoggedDecision, ability: PrincipalAbility): Replay {
  const typeLevel = ability.decide('read', row.subject);
  if (!typeLevel.allowed) return { decision: typeLevel };
  for (const field of row.fields ?? []) {
    if (!ability.fieldAlwaysPermitted('read', row.subject, field))
      return {
        decision: denied(
          `"${field}" is not readable on every record you may read, so it cannot be used to filter or sort`,
        ),
      };
  }
  if (ability.rulesFor('read', row.subject).some((rule) => rule.condition !== undefined))
    return { notReplayable: 'list_filter' };
  return { decision: typeLevel };
}
