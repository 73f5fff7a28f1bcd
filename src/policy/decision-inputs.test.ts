import type { PlaceholderContext } from './placeholders.ts';
import { InputsWriter, inputsBudget, planOf, type DecisionInputs, type InputsPlan } from './decision-inputs.ts';

/** One decision's inputs as the log stores them. */
const keptInputs = (
  plan: InputsPlan | undefined,
  context: PlaceholderContext | undefined,
  documents: Record<string, unknown>[] | undefined,
) => JSON.parse(new InputsWriter(plan, context).json(documents)) as DecisionInputs;

const plan = planOf([
  { action: 'read', subject: 'Task', conditions: { status: 'open', team: '${principal.claims.team}' } },
  {
    action: 'update',
    subject: 'Task',
    conditions: { $or: [{ 'owner.id': '${principal.id}' }, { priority: { $gte: 3 } }] },
  },
]);
const context = { principal: { id: 'user_1', roles: ['member'], claims: { team: 'red' } }, workspaceId: 'w' };
const document = { id: 'r1', createdBy: 'user_1', createdAt: 'c', updatedAt: 'u', status: 'open', title: 'T' };

describe('keptInputs', () => {
  it('plans the placeholders and the top-level fields the conditions read', () => {
    // ${principal.id} is on every decision row (principal_id): not kept again.
    expect(plan.placeholders).toEqual(['${principal.claims.team}']);
    expect([...plan.fields].sort()).toEqual(['owner', 'priority', 'status', 'team']);
  });

  it('keeps placeholder values (null when unresolved) and whole documents within the budget', () => {
    expect(keptInputs(plan, context, [document])).toEqual({
      principal: { '${principal.claims.team}': 'red' },
      documents: [document],
    });
    const noTeam = { ...context, principal: { ...context.principal, claims: {} } };
    expect(keptInputs(plan, noTeam, undefined).principal).toEqual({ '${principal.claims.team}': null });
    expect(
      keptInputs(
        planOf([{ action: 'read', subject: 'Task', conditions: { owner: '${principal.id}' } }]),
        context,
        undefined,
      ),
    ).toEqual({});
    expect(keptInputs(undefined, undefined, undefined)).toEqual({});
  });

  it('cuts a large document to the referenced and system fields, naming them, and drops what still does not fit', () => {
    const large = { ...document, notes: 'n'.repeat(inputsBudget) };
    const cut = keptInputs(plan, context, [large]);
    expect(cut.kept).toEqual(['createdAt', 'createdBy', 'id', 'owner', 'priority', 'status', 'team', 'updatedAt']);
    expect(cut.documents).toEqual([{ id: 'r1', createdBy: 'user_1', createdAt: 'c', updatedAt: 'u', status: 'open' }]);
    const hopeless = { ...document, status: 's'.repeat(inputsBudget) };
    expect(keptInputs(plan, context, [hopeless])).toMatchObject({ dropped: true });
    expect(keptInputs(plan, context, [hopeless]).documents).toBeUndefined();
  });

  it('keeps null for a claim with text PostgreSQL cannot store, wherever the text is', () => {
    for (const team of ['red\u0000', 'red\ud800', ['red', '\udc00'], { 'a\u0000': 'red' }, [{ name: ['\u0000'] }]]) {
      const holder = { ...context, principal: { ...context.principal, claims: { team } } };
      expect(keptInputs(plan, holder, undefined).principal).toEqual({ '${principal.claims.team}': null });
    }
    const nested = { ...context, principal: { ...context.principal, claims: { team: { names: ['red', 'blue'] } } } };
    expect(keptInputs(plan, nested, undefined).principal).toEqual({
      '${principal.claims.team}': { names: ['red', 'blue'] },
    });
  });

  it('leaves out placeholder values that take more than half the budget', () => {
    const huge = { ...context, principal: { ...context.principal, claims: { team: 't'.repeat(inputsBudget) } } };
    expect(keptInputs(plan, huge, [document])).toEqual({ documents: [document] });
  });
});
