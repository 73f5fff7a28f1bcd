import { readFileSync } from 'node:fs';
import { z } from 'zod';

const limit = z.number().int().min(0).nullable();

const plan = z.strictObject({
  id: z.enum(['free', 'starter', 'professional', 'enterprise']),
  name: z.string().min(1),
  prices: z.strictObject({ month: z.number().int().min(0), year: z.number().int().min(0) }),
  currency: z.string().regex(/^[a-z]{3}$/, 'must be a lowercase ISO 4217 code'),
  features: z.array(z.string()),
  limits: z.strictObject({
    members: limit,
    // "*" is every structure together; a structure's own limit applies besides it.
    records: z
      .record(z.string().regex(/^(\*|[A-Z][A-Za-z0-9]*)$/, 'must be "*" or a structure name'), limit)
      .refine((records) => '*' in records, 'must name the overall limit "*" (null for unlimited)'),
    apiCallsPerMonth: limit,
  }),
});

const planFile = z
  .strictObject({ plans: z.array(plan).min(1) })
  .refine((file) => file.plans.some((entry) => entry.id === 'free'), 'must have the free plan')
  .refine(
    (file) => new Set(file.plans.map((entry) => entry.id)).size === file.plans.length,
    'must name each plan once',
  );

export type Plan = z.output<typeof plan>;
export type PlanId = Plan['id'];
export type PlanLimits = Plan['limits'];

export const defaultPlansFile = new URL('../../seeds/plans.json', import.meta.url);

export class PlansError extends Error {}

/** The plans of seeds/plans.json (or PLANS_FILE), read and checked once at start. */
export class Plans {
  readonly all: readonly Plan[];
  private readonly byId: Map<string, Plan>;

  constructor(plans: readonly Plan[]) {
    this.all = plans;
    this.byId = new Map(plans.map((entry) => [entry.id, entry]));
  }

  /** A bad file stops the start with one line naming what is wrong. */
  static load(file: string | URL = defaultPlansFile): Plans {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (error) {
      throw new PlansError(`Plans file ${String(file)} is unreadable: ${(error as Error).message}`);
    }
    const result = planFile.safeParse(parsed);
    if (!result.success) {
      const problems = result.error.issues.map((issue) => `${issue.path.join('.') || '(file)'} ${issue.message}`);
      throw new PlansError(`Plans file ${String(file)} is invalid: ${problems.join('; ')}`);
    }
    return new Plans(result.data.plans);
  }

  find(id: string): Plan | undefined {
    return this.byId.get(id);
  }

  /** A plan id no longer in the file (removed since it was assigned) falls back to free. */
  of(id: string): Plan {
    return this.byId.get(id) ?? this.byId.get('free')!;
  }
}
