export {
  Cordon,
  type Check,
  type CheckResult,
  type CordonOptions,
  type NamedPrincipal,
  type Principal,
} from './cordon.ts';
export { CordonError, type FieldError, type Problem } from './errors.ts';
export type {
  RealtimeEvent,
  RealtimeTuning,
  RecordCreatedEvent,
  RecordDeletedEvent,
  RecordEvent,
  RecordUpdatedEvent,
  ResetEvent,
  SubscribeOptions,
  Subscription,
} from './realtime.ts';
export type {
  CordonRecord,
  Filter,
  Precondition,
  RecordData,
  RecordPage,
  RecordPatch,
  RecordQuery,
} from './records.ts';
export type { components, paths } from './schema.ts';
export type { Token } from './token.ts';
