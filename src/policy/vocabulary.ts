/** The words policies are written in. */
export const actions = ['create', 'read', 'update', 'delete', 'manage'] as const;
export type Action = (typeof actions)[number];

const systemSubjects = [
  'Workspace',
  'IdentityProvider',
  'Policy',
  'Structure',
  'Member',
  'Invitation',
  'DecisionLog',
  'Billing',
  'Trigger',
  'Function',
  // What a function's `context.api.sendNotification` asks for: a `notification.requested` event.
  'Notification',
] as const;
export type SystemSubject = (typeof systemSubjects)[number];

export const anySubject = 'all';

export const isSystemSubject = (subject: string): subject is SystemSubject =>
  (systemSubjects as readonly string[]).includes(subject);

/** Fields every record has besides its data. */
export const systemFields = ['id', 'createdBy', 'createdAt', 'updatedAt'] as const;
