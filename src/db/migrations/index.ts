import { Migration20261125000000Foundation } from './Migration20261125000000Foundation.ts';
import { Migration20261125010000IdentityProviders } from './Migration20261125010000IdentityProviders.ts';
import { Migration20261125020000Decisions } from './Migration20261125020000Decisions.ts';
import { Migration20261125030000Records } from './Migration20261125030000Records.ts';
import { Migration20261125040000Members } from './Migration20261125040000Members.ts';
import { Migration20261129010000SealProgress } from './Migration20261129010000SealProgress.ts';
import { Migration20261129020000SigningKeys } from './Migration20261129020000SigningKeys.ts';
import { Migration20261129030000Events } from './Migration20261129030000Events.ts';
import { Migration20261129134500FunctionRuns } from './Migration20261129134500FunctionRuns.ts';
import { Migration20261130010000DeliveryEvents } from './Migration20261130010000DeliveryEvents.ts';
import { Migration20261130020000EventRetentionMark } from './Migration20261130020000EventRetentionMark.ts';
import { Migration20261130030000Billing } from './Migration20261130030000Billing.ts';
import { Migration20261130040000RecordCounts } from './Migration20261130040000RecordCounts.ts';
import { Migration20261201000000StripeBilling } from './Migration20261201000000StripeBilling.ts';
import { Migration20261201010000WorkspaceScopedIds } from './Migration20261201010000WorkspaceScopedIds.ts';
import { Migration20261201020000CitusReady } from './Migration20261201020000CitusReady.ts';
import { Migration20261201030000NeedleFilters } from './Migration20261201030000NeedleFilters.ts';
import { Migration20261201033000EffectivePlanInList } from './Migration20261201033000EffectivePlanInList.ts';
import { Migration20261201036000OperatorTotals } from './Migration20261201036000OperatorTotals.ts';
import { Migration20261201040000PolicyTests } from './Migration20261201040000PolicyTests.ts';
import { Migration20261201050000DecisionInputs } from './Migration20261201050000DecisionInputs.ts';
import { Migration20261201060000RecordInsertPositions } from './Migration20261201060000RecordInsertPositions.ts';
import { Migration20261201070000RecordsContainingRows } from './Migration20261201070000RecordsContainingRows.ts';
import { Migration20261201080000BillingEventRetention } from './Migration20261201080000BillingEventRetention.ts';

/** Applied in order at start; a new migration is appended here and never edited once landed. */
export const migrations = [
  Migration20261125000000Foundation,
  Migration20261125010000IdentityProviders,
  Migration20261125020000Decisions,
  Migration20261125030000Records,
  Migration20261125040000Members,
  Migration20261129010000SealProgress,
  Migration20261129020000SigningKeys,
  Migration20261129030000Events,
  Migration20261129134500FunctionRuns,
  Migration20261130010000DeliveryEvents,
  Migration20261130020000EventRetentionMark,
  Migration20261130030000Billing,
  Migration20261130040000RecordCounts,
  Migration20261201000000StripeBilling,
  Migration20261201010000WorkspaceScopedIds,
  Migration20261201020000CitusReady,
  Migration20261201030000NeedleFilters,
  Migration20261201033000EffectivePlanInList,
  Migration20261201036000OperatorTotals,
  Migration20261201040000PolicyTests,
  Migration20261201050000DecisionInputs,
  Migration20261201060000RecordInsertPositions,
  Migration20261201070000RecordsContainingRows,
  Migration20261201080000BillingEventRetention,
];
