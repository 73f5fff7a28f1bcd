import type pg from 'pg';

/** Rows straight into the table as the owner: a workspace brought near its limit without the API. */
export async function fillRecords(
  owner: pg.Client,
  workspaceId: string,
  structure: string,
  count: number,
): Promise<void> {
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     select gen_random_uuid(), $1, $2, jsonb_build_object('title', 'seeded ' || i), 'seed', now(), now()
     from generate_series(1, $3::int) as i`,
    [workspaceId, structure, count],
  );
}

/** The records stored in a workspace (of one structure, if named), counted by the owner. */
export async function storedRecords(owner: pg.Client, workspaceId: string, structure?: string): Promise<number> {
  const { rows } = await owner.query(
    'select count(*) from records where workspace_id = $1 and ($2::text is null or structure = $2::text)',
    [workspaceId, structure ?? null],
  );
  return Number(rows[0].count);
}
