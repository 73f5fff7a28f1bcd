/**
 * What the serving role may do, table by table. Applied after every migration run, so the
 * grants always match the code that is about to serve. Anything not listed is not granted.
 */
export const servingGrants: Record<string, readonly string[]> = {
  workspaces: ['select', 'insert', 'update', 'delete'],
  policies: ['select', 'insert', 'update', 'delete'],
  members: ['select', 'insert', 'update', 'delete'],
  records: ['select', 'insert', 'update', 'delete'],
  identity_providers: ['select', 'insert', 'update', 'delete'],
};

export const servingFunctions: readonly string[] = ['cordon_current_workspace()', 'cordon_workspace_counts(uuid[])'];
