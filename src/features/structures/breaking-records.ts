import { sql, type RawBuilder } from 'kysely';
import type { FieldDefinition, Fields } from './structures.schema.ts';

type Fragment = RawBuilder<unknown>;

/**
 * The strings record-schema.ts accepts as a `datetime` (its RFC 3339 pattern, and a date
 * `Date.parse` can read), as one pattern PostgreSQL and JavaScript read alike: V8 takes any day
 * 01–31 in any month, hour 24 only as 24:00:00 with a zero fraction, and offsets up to ±23:59.
 */
export const dateTimePattern =
  '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt](([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?|24:00:00(\\.0{1,9})?)([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$';
const uuidPattern = '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';

const isString = (value: Fragment) => sql`jsonb_typeof(${value}) = 'string'`;
const text = (value: Fragment) => sql`(${value} #>> '{}')`;
const number = (value: Fragment) => sql`(${value} #>> '{}')::numeric`;

/** SQL that holds when a stored value satisfies the field's definition, as its JSON Schema does. */
function valueFits(field: FieldDefinition, value: Fragment): Fragment {
  const all = (parts: Fragment[]) => sql`(${sql.join(parts, sql` and `)})`;
  switch (field.type) {
    case 'text':
      return all([
        isString(value),
        ...(field.maxLength !== undefined ? [sql`length(${text(value)}) <= ${field.maxLength}::integer`] : []),
        ...(field.enum ? [sql`${text(value)} collate "C" = any (${field.enum}::text[])`] : []),
      ]);
    case 'number':
    case 'integer': {
      // Both sides are shortest round-trip decimals of doubles, so numeric order is double order.
      const bound = (limit: number | undefined, operator: Fragment) =>
        limit === undefined ? [] : [sql`${number(value)} ${operator} ${String(limit)}::numeric`];
      return all([
        sql`jsonb_typeof(${value}) = 'number'`,
        ...(field.type === 'integer' ? [sql`${number(value)} % 1 = 0`] : []),
        ...bound(field.min, sql`>=`),
        ...bound(field.max, sql`<=`),
        ...(field.enum ? [sql`${number(value)} = any (${field.enum.map(String)}::numeric[])`] : []),
      ]);
    }
    case 'boolean':
      return sql`jsonb_typeof(${value}) = 'boolean'`;
    case 'datetime':
      return all([isString(value), sql`${text(value)} ~ ${dateTimePattern}::text`]);
    case 'json':
      return sql`true`;
    case 'reference':
      return all([isString(value), sql`${text(value)} ~ ${uuidPattern}::text`]);
  }
}

/**
 * SQL over a records row `r` that holds when its data would fail the schema of `fields` once the
 * defaults of the `filled` fields are in where they are missing: a key that is not a field, a
 * required field missing, or a value that does not fit its field. What `unstorableData` checks is
 * left out: every stored record passed it when it was written.
 */
export function breakingCondition(fields: Fields, filled: readonly string[]): Fragment {
  const names = Object.keys(fields);
  const required = names.filter((name) => fields[name]!.required && !filled.includes(name));
  const misfits = names.map((name) => {
    const value = sql`(r.data -> ${name}::text)`;
    return sql`(r.data ? ${name}::text and not ${valueFits(fields[name]!, value)})`;
  });
  return sql`((r.data - ${names}::text[]) <> '{}'::jsonb
    or not (r.data ?& ${required}::text[])
    ${misfits.length ? sql`or ${sql.join(misfits, sql` or `)}` : sql``})`;
}
