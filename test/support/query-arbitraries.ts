import fc from 'fast-check';

/**
 * Generators for MongoDB-subset queries and the documents they run over, shared by the
 * agreement tests (in memory vs the reference, and SQL vs both).
 */
type Query = Record<string, unknown>;

// A key with quotes and a backslash, and values shaped like SQL and jsonpath, test the escaping.
export const keys = ['a', 'b', 'c', 'tags', 'q"\\k\''];
const singlePaths = keys;
const dottedPaths = ['a.b', 'b.c', 'tags.a', 'a.b.c'];
// Few, overlapping values, so generated queries often meet generated documents.
const pool = [
  null,
  true,
  false,
  0,
  -0,
  1,
  2,
  1.5,
  -3,
  10,
  '1',
  '',
  'a',
  'b',
  'x',
  'A',
  'ab',
  'X',
  'AB',
  '\u{1F600}',
  '\uFFFF',
  '\uE000',
  '\u{10000}',
  'é',
  'É',
  'a\nb',
  '"',
  '\\',
  "' or 1=1 --",
  '$.a ? (@ == 1)',
  '%_*',
  'ſ',
  '\u212A',
  'k',
  'σ',
  'ς',
  'Σ',
  's',
];
const nonNull = pool.filter((value) => value !== null);
const ranged = pool.filter((value) => typeof value === 'number' || typeof value === 'string') as (string | number)[];
const patterns = [
  '',
  'a',
  '^a',
  'b$',
  '^$',
  '.',
  '^a.b$',
  '[0-9]',
  '^[a-z]+$',
  'x|y',
  '\\d',
  '\\w\\W',
  '\\s',
  '^.$',
  'é',
  'A',
  '\u{1F600}',
  '[^a]',
  'a{2}',
  '(ab)+',
  '\\.',
  '\\-',
  's',
  '^[a-z]$',
  '[A-F]',
  '[^s]',
  'ς',
];

const scalar = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(...pool) },
  { weight: 1, arbitrary: fc.integer({ min: -5, max: 12 }) },
  { weight: 1, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 3 }) },
);
export const value = (depth: number): fc.Arbitrary<unknown> =>
  depth === 0
    ? scalar
    : fc.oneof(
        { weight: 2, arbitrary: scalar },
        { weight: 1, arbitrary: fc.array(value(depth - 1), { maxLength: 3 }) },
        { weight: 1, arbitrary: fc.dictionary(fc.constantFrom(...keys), value(depth - 1), { maxKeys: 3 }) },
      );
export const documents = fc.dictionary(fc.constantFrom(...keys), value(3), { minKeys: 1, maxKeys: 4 });

/** Operators on a path with `segments` segments (0: the element inside $elemMatch). */
export const operatorEntries = (segments: number, depth: number): fc.Arbitrary<[string, unknown][]> => {
  const scalars = segments > 1 ? fc.constantFrom(...nonNull) : fc.constantFrom(...pool);
  const choices: Record<string, fc.Arbitrary<[string, unknown][]>> = {
    $eq: scalars.map((item) => [['$eq', item]]),
    $ne: scalars.map((item) => [['$ne', item]]),
    $lt: fc.constantFrom(...ranged).map((item) => [['$lt', item]]),
    $lte: fc.constantFrom(...ranged).map((item) => [['$lte', item]]),
    $gt: fc.constantFrom(...ranged).map((item) => [['$gt', item]]),
    $gte: fc.constantFrom(...ranged).map((item) => [['$gte', item]]),
    $in: fc.array(scalars, { maxLength: 4 }).map((items) => [['$in', items]]),
    $nin: fc.array(scalars, { maxLength: 4 }).map((items) => [['$nin', items]]),
    $all: fc.array(fc.constantFrom(...nonNull), { minLength: 1, maxLength: 3 }).map((items) => [['$all', items]]),
    $exists: fc.boolean().map((item) => [['$exists', item]]),
    $size: fc.integer({ min: 0, max: 3 }).map((item) => [['$size', item]]),
    // "i" refuses letters beyond ASCII in the pattern, so those patterns come without it.
    $regex: fc
      .constantFrom(...patterns)
      .chain((pattern) =>
        fc.tuple(
          fc.constant(pattern),
          [...pattern].some((character) => character.codePointAt(0)! > 0x7f)
            ? fc.constantFrom(undefined, '')
            : fc.constantFrom(undefined, '', 'i'),
        ),
      )
      .map(([pattern, options]) =>
        options === undefined
          ? [['$regex', pattern]]
          : [
              ['$regex', pattern],
              ['$options', options],
            ],
      ),
    ...(depth > 0
      ? { $elemMatch: elemMatch(depth - 1).map((item): [string, unknown][] => [['$elemMatch', item]]) }
      : {}),
  };
  return fc
    .uniqueArray(fc.constantFrom(...Object.keys(choices)), { minLength: 1, maxLength: 2 })
    .chain((names) => fc.tuple(...names.map((name) => choices[name]!)))
    .map((groups) => groups.flat());
};
const elemMatch = (depth: number): fc.Arbitrary<Query> =>
  fc.oneof(
    operatorEntries(0, depth).map((entries) => Object.fromEntries(entries)),
    query(depth, 1),
  );
const field = (depth: number): fc.Arbitrary<[string, unknown]> =>
  fc.oneof(fc.constantFrom(...singlePaths), fc.constantFrom(...dottedPaths)).chain((path) => {
    const segments = path.split('.').length;
    return fc.oneof(
      (segments > 1 ? fc.constantFrom(...nonNull) : fc.constantFrom(...pool)).map((item): [string, unknown] => [
        path,
        item,
      ]),
      operatorEntries(segments, depth).map((entries): [string, unknown] => [path, Object.fromEntries(entries)]),
    );
  });
const query = (depth: number, minLength = 0): fc.Arbitrary<Query> => {
  const entry: fc.Arbitrary<[string, unknown]> =
    depth === 0
      ? field(0)
      : fc.oneof(
          { weight: 3, arbitrary: field(depth) },
          {
            weight: 1,
            arbitrary: fc.tuple(
              fc.constantFrom('$and', '$or', '$nor'),
              fc.array(query(depth - 1), { minLength: 1, maxLength: 3 }),
            ),
          },
        );
  return fc.array(entry, { minLength, maxLength: 2 }).map((entries) => Object.fromEntries(entries));
};

// Mostly small queries: in a big one a single operator rarely decides the answer.
export const queries = fc.oneof(
  { weight: 1, arbitrary: fc.constant({}) },
  { weight: 12, arbitrary: query(0, 1) },
  { weight: 8, arbitrary: query(1, 1) },
  { weight: 4, arbitrary: query(2, 1) },
);
