import { ProblemError, type ErrorCode } from '../http/errors.ts';
import { toProblem } from '../http/problems.ts';
import type { Decision } from './ability.ts';
import type { DecisionEntry } from './decision-log.ts';

/** A refusal that is a decision of its own (a grant beyond the grantor's roles, a rule on a record). */
export class Refusal extends ProblemError {
  readonly decision: Decision;

  constructor(decision: Decision, code: ErrorCode = 'forbidden') {
    super(code, decision.reason);
    this.decision = decision;
  }
}

/** A decision being taken: refined as the request learns more, written exactly once. */
export class Ruling {
  entry: DecisionEntry;
  /** Set once a committed statement carried the decision. */
  written = false;

  constructor(entry: DecisionEntry) {
    this.entry = entry;
  }

  /** The resource, the fields, or the rule that decided on the stored row. */
  refine(patch: Partial<DecisionEntry>): DecisionEntry {
    this.entry = { ...this.entry, ...patch };
    return this.entry;
  }

  /** Throws the 403 of a refusing decision (logged as that decision) unless it allows. */
  require(decision: Decision): void {
    this.refine({ decision });
    if (!decision.allowed) throw new Refusal(decision);
  }

  /**
   * The decision with what became of the request: a refusal of its own, or the allow with the
   * problem that undid it (validation, a conflict, a precondition, a missing row).
   */
  outcome(error: unknown): DecisionEntry {
    if (error instanceof Refusal) return { ...this.entry, decision: error.decision };
    const problem = toProblem(error);
    const what = problem ? `${problem.status} ${problem.code}` : '500 internal';
    return {
      ...this.entry,
      decision: { ...this.entry.decision, reason: `${this.entry.decision.reason}; not done: ${what}` },
    };
  }
}
