import {
  Ability,
  createMongoAbility,
  fieldPatternMatcher,
  type AbilityTuple,
  type MongoQuery,
  type RawRuleFrom,
} from '@casl/ability';
import fc from 'fast-check';
import { referenceMatches } from '../../test/support/mongo-reference.ts';
import { documents, operatorEntries, queries, value } from '../../test/support/query-arbitraries.ts';
import { compareCodePoints, conditionsMatcher, matches, parseConditions, type Condition } from './conditions.ts';
import { normaliseRegex, toJsRegExp } from './regex.ts';

type Query = Record<string, unknown>;

function parse(query: Query): Condition {
  const parsed = parseConditions(query, '');
  if (!parsed.condition) throw new Error(`refused: ${JSON.stringify(parsed.errors)}`);
  return parsed.condition;
}

describe('conditions follow MongoDB semantics', () => {
  const cases: [string, Query, unknown, boolean][] = [
    ['a missing field equals null', { a: null }, {}, true],
    ['$eq null matches a null field', { a: { $eq: null } }, { a: null }, true],
    ['null matches an array that contains null', { a: null }, { a: [1, null] }, true],
    ['null does not match 0', { a: null }, { a: 0 }, false],
    ['$ne null does not match a missing field', { a: { $ne: null } }, {}, false],
    ['$ne null matches a present value', { a: { $ne: null } }, { a: 0 }, true],
    // @casl/ability 7.0.1's default matcher answers true for these two (a silent grant).
    ['$lte does not match a missing field', { amount: { $lte: 1000 } }, {}, false],
    ['$lt does not match null', { amount: { $lt: 5 } }, { amount: null }, false],
    ['a number does not equal a numeric string', { a: 1 }, { a: '1' }, false],
    ['a numeric string does not equal a number', { a: '1' }, { a: 1 }, false],
    ['a numeric range ignores numeric strings', { a: { $gt: 0 } }, { a: '5' }, false],
    ['a string range ignores numbers', { a: { $gte: '' } }, { a: 5 }, false],
    ['true does not equal 1', { a: true }, { a: 1 }, false],
    ['0 equals -0', { a: 0 }, { a: -0 }, true],
    ['a value matches an array holding it', { tags: 'x' }, { tags: ['x', 'y'] }, true],
    ['$ne on an array holding the value does not match', { tags: { $ne: 'x' } }, { tags: ['x', 'y'] }, false],
    ['$gt matches when one element is greater', { a: { $gt: 5 } }, { a: [1, 10] }, true],
    ['$gt and $lt may be met by different elements', { a: { $gt: 5, $lt: 8 } }, { a: [1, 10] }, true],
    ['$gt and $lt on one scalar must both hold', { a: { $gt: 5, $lt: 8 } }, { a: 10 }, false],
    ['$elemMatch needs one element to meet both', { a: { $elemMatch: { $gt: 5, $lt: 8 } } }, { a: [1, 10] }, false],
    [
      '$elemMatch operator form matches an element',
      { scores: { $elemMatch: { $gte: 80, $lt: 85 } } },
      { scores: [79, 82] },
      true,
    ],
    ['$elemMatch operator form does not enter nested arrays', { a: { $elemMatch: { $eq: 5 } } }, { a: [[5]] }, false],
    ['$elemMatch needs an array', { a: { $elemMatch: { $eq: 5 } } }, { a: 5 }, false],
    [
      '$elemMatch object form needs one element to meet the whole query',
      { items: { $elemMatch: { qty: { $gt: 5 }, sku: 'x' } } },
      {
        items: [
          { qty: 10, sku: 'y' },
          { qty: 1, sku: 'x' },
        ],
      },
      false,
    ],
    [
      '$elemMatch object form matches an element',
      { items: { $elemMatch: { qty: { $gt: 5 }, sku: 'x' } } },
      {
        items: [
          { qty: 1, sku: 'y' },
          { qty: 9, sku: 'x' },
        ],
      },
      true,
    ],
    [
      '$elemMatch object form skips non-object elements',
      { items: { $elemMatch: { sku: null } } },
      { items: [1, 'x', null] },
      false,
    ],
    [
      '$elemMatch object form does not treat an array element as a document',
      { items: { $elemMatch: { sku: 'x' } } },
      { items: [[{ sku: 'x' }]] },
      false,
    ],
    [
      'dotted paths without $elemMatch may use different elements',
      { 'items.qty': { $gt: 5 }, 'items.sku': 'x' },
      {
        items: [
          { qty: 10, sku: 'y' },
          { qty: 1, sku: 'x' },
        ],
      },
      true,
    ],
    ['a dotted path reaches through an array of objects', { 'a.b': 2 }, { a: [{ b: 1 }, { b: 2 }] }, true],
    ['a dotted path then matches inside the reached array', { 'a.b': 3 }, { a: [{ b: [3] }] }, true],
    ['a dotted path does not enter arrays nested in arrays', { 'a.b': 1 }, { a: [[{ b: 1 }]] }, false],
    ['$in with no values matches nothing', { a: { $in: [] } }, { a: 1 }, false],
    ['$nin with no values matches everything', { a: { $nin: [] } }, {}, true],
    ['$in with null matches a missing field', { a: { $in: [1, null] } }, {}, true],
    ['$nin with null does not match a missing field', { a: { $nin: [null] } }, {}, false],
    ['$in matches an array element', { tags: { $in: ['q', 'y'] } }, { tags: ['x', 'y'] }, true],
    ['$all needs every value', { tags: { $all: ['x', 'y'] } }, { tags: ['y', 'z', 'x'] }, true],
    ['$all fails when one value is missing', { tags: { $all: ['x', 'q'] } }, { tags: ['x', 'y'] }, false],
    ['$all of one value matches that scalar', { tags: { $all: ['x'] } }, { tags: 'x' }, true],
    ['$size matches the array length', { tags: { $size: 2 } }, { tags: ['x', 'y'] }, true],
    ['$size does not look inside elements', { a: { $size: 2 } }, { a: [[1, 2]] }, false],
    ['$size does not match a missing field', { a: { $size: 0 } }, {}, false],
    ['$exists reaches through arrays, null counts', { 'a.b': { $exists: true } }, { a: [{ c: 1 }, { b: null }] }, true],
    ['$exists is false when no element has the field', { 'a.b': { $exists: true } }, { a: [{ c: 1 }] }, false],
    ['$exists false on a path through a scalar', { 'a.b': { $exists: false } }, { a: 5 }, true],
    [
      '$regex with $options i ignores case',
      { title: { $regex: '^hello', $options: 'i' } },
      { title: 'HELLO world' },
      true,
    ],
    [
      '$options i folds ASCII only: s is not the long s',
      { title: { $regex: '^s', $options: 'i' } },
      { title: 'ſecret' },
      false,
    ],
    [
      '$options i folds ASCII only: k is not the Kelvin sign',
      { title: { $regex: 'k', $options: 'i' } },
      { title: '\u212A' },
      false,
    ],
    ['$options i folds class ranges', { title: { $regex: '^[a-c]+$', $options: 'i' } }, { title: 'AbC' }, true],
    [
      '$options i keeps negated classes negated in both cases',
      { title: { $regex: '^[^s]$', $options: 'i' } },
      { title: 'S' },
      false,
    ],
    ['$regex without options is case sensitive', { title: { $regex: '^hello' } }, { title: 'HELLO world' }, false],
    ['$regex . matches a newline', { title: { $regex: '^a.b$' } }, { title: 'a\nb' }, true],
    ['$regex . matches one whole character', { title: { $regex: '^.$' } }, { title: '\u{1F600}' }, true],
    ['$regex matches a string element of an array', { tags: { $regex: '^x' } }, { tags: [1, 'xy'] }, true],
    ['$regex never matches a number', { a: { $regex: '1' } }, { a: 1 }, false],
    ['$regex \\s is ASCII whitespace only', { a: { $regex: '\\s' } }, { a: 'a\u00a0b' }, false],
    ['$regex \\d is ASCII digits only', { a: { $regex: '^\\d+$' } }, { a: '\u0661\u0662' }, false],
    ['strings compare by code point, not UTF-16 unit', { a: { $gt: '\uFFFF' } }, { a: '\u{1F600}' }, true],
    ['$and needs every query', { $and: [{ a: 1 }, { b: 2 }] }, { a: 1, b: 3 }, false],
    ['$or needs one query', { $or: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 2 }, true],
    ['$nor needs no query to match', { $nor: [{ a: 1 }, { b: 2 }] }, { a: 0, b: 3 }, true],
    ['{} matches everything', {}, { a: 1 }, true],
    ['inherited properties are never read', { toString: { $exists: true } }, {}, false],
    [
      'an own __proto__ key is data, not a prototype',
      { admin: true },
      JSON.parse('{"__proto__": {"admin": true}}'),
      false,
    ],
    ['a hostile operator-like string matches only itself', { owner: '{"$ne":null}' }, { owner: 'u1' }, false],
    ['a hostile operator-like string matches itself', { owner: '{"$ne":null}' }, { owner: '{"$ne":null}' }, true],
    ['an SQL-like string matches only literally', { name: "' OR 1=1 --" }, { name: 'alice' }, false],
  ];

  it.each(cases)('%s', (_name, query, document, expected) => {
    expect(matches(parse(query), document)).toBe(expected);
    expect(referenceMatches(query, document)).toBe(expected);
  });

  it('orders strings by code point where UTF-16 units disagree', () => {
    expect('\u{1F600}' > '\uFFFF').toBe(false);
    expect(compareCodePoints('\u{1F600}', '\uFFFF')).toBeGreaterThan(0);
    expect(compareCodePoints('\u{1F600}', '\u{1F601}')).toBeLessThan(0);
    expect(compareCodePoints('ab', 'a')).toBeGreaterThan(0);
    expect(compareCodePoints('é', 'é')).toBe(0);
  });

  it('never reads a prototype property, even through a hand-built AST', () => {
    expect(matches({ kind: 'exists', path: ['constructor'], exists: true }, {})).toBe(false);
    expect(matches({ kind: 'compare', path: ['a', 'constructor'], operator: 'eq', value: null }, { a: [{}] })).toBe(
      true,
    );
  });

  it('parses into an explicit AST', () => {
    expect(
      parse({ a: 1, 'b.c': { $gt: 2, $regex: '\\d', $options: 'i' }, tags: { $elemMatch: { $in: ['x'] } } }),
    ).toEqual({
      kind: 'and',
      conditions: [
        { kind: 'compare', path: ['a'], operator: 'eq', value: 1 },
        {
          kind: 'and',
          conditions: [
            { kind: 'compare', path: ['b', 'c'], operator: 'gt', value: 2 },
            { kind: 'regex', path: ['b', 'c'], pattern: '[0-9]' },
          ],
        },
        {
          kind: 'elemMatch',
          path: ['tags'],
          onElement: true,
          condition: { kind: 'in', path: [], negated: false, values: ['x'] },
        },
      ],
    });
    expect(parse({})).toEqual({ kind: 'and', conditions: [] });
  });
});

describe('conditions refuse what they cannot answer like MongoDB and PostgreSQL', () => {
  const root = '/rules/2/conditions';
  const cases: [string, unknown, string, RegExp][] = [
    ['a lookahead', { title: { $regex: '(?=x)' } }, '/title/$regex', /lookaround/],
    ['a nested quantifier', { title: { $regex: '(a+)+' } }, '/title/$regex', /catastrophic/],
    ['a lazy quantifier', { title: { $regex: 'a+?' } }, '/title/$regex', /lazy/],
    ['a word boundary', { title: { $regex: '\\bx' } }, '/title/$regex', /word boundar/],
    ['a pattern over 200 characters', { title: { $regex: 'a'.repeat(201) } }, '/title/$regex', /200/],
    ['$options g', { title: { $regex: 'a', $options: 'g' } }, '/title/$options', /"g"/],
    ['a non-ASCII letter with $options i', { title: { $regex: 'école', $options: 'i' } }, '/title/$regex', /ASCII/],
    [
      'a class range beyond ASCII with $options i',
      { title: { $regex: '[a-ÿ]', $options: 'i' } },
      '/title/$regex',
      /ASCII/,
    ],
    ['$options without $regex', { title: { $options: 'i' } }, '/title/$options', /\$regex/],
    ['a non-string $regex', { title: { $regex: 1 } }, '/title/$regex', /string/],
    ['an unknown operator', { a: { $foo: 1 } }, '/a/$foo', /\$foo is not supported/],
    ['$where', { $where: 'this.a == 1' }, '/$where', /\$where is not supported/],
    ['$expr', { $expr: { $eq: ['$a', 1] } }, '/$expr', /\$expr/],
    ['$text', { $text: { $search: 'x' } }, '/$text', /\$text/],
    ['$not', { a: { $not: { $eq: 1 } } }, '/a/$not', /\$not is not supported/],
    ['$mod', { a: { $mod: [2, 0] } }, '/a/$mod', /\$mod/],
    ['$type', { a: { $type: 'string' } }, '/a/$type', /\$type/],
    ['$and among field operators', { a: { $gt: 1, $and: [] } }, '/a/$and', /\$and cannot/],
    ['object equality', { a: { b: 1 } }, '/a', /comparing whole objects is not supported/],
    ['empty object equality', { a: {} }, '/a', /comparing whole objects/],
    ['array equality', { tags: ['a', 'b'] }, '/tags', /comparing whole arrays is not supported; use \$all and \$size/],
    ['array equality with $eq', { tags: { $eq: ['a'] } }, '/tags/$eq', /comparing whole arrays/],
    ['a nested array in $in', { tags: { $in: [['a']] } }, '/tags/$in/0', /comparing whole arrays/],
    ['operators mixed with fields', { a: { $eq: 1, b: 2 } }, '/a', /mix/],
    ['null on a dotted path', { 'a.b': null }, '/a.b', /null comparisons on nested paths are not supported/],
    ['$ne null on a dotted path', { 'a.b': { $ne: null } }, '/a.b/$ne', /nested paths/],
    ['null in $in on a dotted path', { 'a.b': { $in: [1, null] } }, '/a.b/$in/1', /nested paths/],
    ['a numeric path segment', { 'tags.0': 'x' }, '/tags.0', /array index paths are not supported/],
    ['an empty path segment', { 'a..b': 1 }, '/a..b', /empty segment/],
    ['a $ path segment', { 'a.$b': 1 }, '/a.$b', /start with \$/],
    ['more than 10 segments', { 'a.b.c.d.e.f.g.h.i.j.k': 1 }, '/a.b.c.d.e.f.g.h.i.j.k', /10 segments/],
    ['constructor', { constructor: { $exists: true } }, '/constructor', /constructor/],
    ['prototype inside a path', { 'a.prototype': 1 }, '/a.prototype', /prototype/],
    ['an own __proto__ key', JSON.parse('{"__proto__": 1}'), '/__proto__', /__proto__/],
    ['101 $in values', { a: { $in: Array.from({ length: 101 }, (_, index) => index) } }, '/a/$in', /100/],
    ['$in that is not a list', { a: { $in: 'x' } }, '/a/$in', /list/],
    ['Infinity', { a: Infinity }, '/a', /finite/],
    ['NaN in a range', { a: { $gt: NaN } }, '/a/$gt', /finite/],
    ['null in a range', { a: { $lt: null } }, '/a/$lt', /string or a number/],
    ['a boolean in a range', { a: { $gte: true } }, '/a/$gte', /string or a number/],
    ['a string over 1000 characters', { a: 'x'.repeat(1001) }, '/a', /1000/],
    ['a non-JSON value', { a: new Date(0) }, '/a', /whole objects/],
    ['an empty $all', { a: { $all: [] } }, '/a/$all', /1 to 100/],
    ['null in $all', { a: { $all: [null] } }, '/a/$all', /null/],
    ['a negative $size', { a: { $size: -1 } }, '/a/$size', /non-negative integer/],
    ['a fractional $size', { a: { $size: 1.5 } }, '/a/$size', /non-negative integer/],
    ['a non-boolean $exists', { a: { $exists: 1 } }, '/a/$exists', /true or false/],
    ['an empty $elemMatch', { a: { $elemMatch: {} } }, '/a/$elemMatch', /non-empty/],
    ['$elemMatch mixing operators and fields', { a: { $elemMatch: { $gt: 1, b: 2 } } }, '/a/$elemMatch', /not both/],
    ['an error inside $elemMatch', { a: { $elemMatch: { b: { $where: 'x' } } } }, '/a/$elemMatch/b/$where', /\$where/],
    ['an empty $and', { $and: [] }, '/$and', /1 to 20/],
    ['21 $or queries', { $or: Array.from({ length: 21 }, () => ({ a: 1 })) }, '/$or', /1 to 20/],
    ['a non-object in $nor', { $nor: [1] }, '/$nor/0', /must be an object/],
    ['an error deep in $or', { $or: [{ a: 1 }, { b: { $regex: '\\1' } }] }, '/$or/1/b/$regex', /backreference/],
    ['a key with / and ~', { 'a/b~c': { $foo: 1 } }, '/a~1b~0c/$foo', /\$foo/],
    [
      'more than 200 conditions',
      {
        $and: Array.from({ length: 20 }, () =>
          Object.fromEntries(Array.from({ length: 11 }, (_, index) => [`f${index}`, 1])),
        ),
      },
      '',
      /200/,
    ],
    ['a query that is not an object', [], '', /must be an object/],
  ];

  it.each(cases)('refuses %s', (_name, query, pointer, detail) => {
    const parsed = parseConditions(query, root);
    expect(parsed.condition).toBeUndefined();
    expect(parsed.errors).toEqual([{ pointer: `${root}${pointer}`, detail: expect.stringMatching(detail) }]);
  });

  it('reports every error, not only the first', () => {
    const parsed = parseConditions({ a: { $foo: 1 }, 'b.c': null, $or: [{ d: { $regex: '(' } }] }, root);
    expect(parsed.errors.map((error) => error.pointer)).toEqual([
      `${root}/a/$foo`,
      `${root}/b.c`,
      `${root}/$or/0/d/$regex`,
    ]);
  });

  it('stops a deeply nested query without exhausting the stack', () => {
    let query: Query = { a: 1 };
    for (let depth = 0; depth < 10_000; depth++) query = { $and: [query] };
    expect(parseConditions(query, root).errors).toEqual([{ pointer: root, detail: expect.stringMatching(/200/) }]);
  });
});

describe('the $regex subset', () => {
  it.each([
    ['', ''],
    ['^a.c$', '^a.c$'],
    ['\\d+\\w\\s', '[0-9]+[A-Za-z0-9_][ \\t\\n\\r\\f\\v]'],
    ['\\D\\W\\S', '[^0-9][^A-Za-z0-9_][^ \\t\\n\\r\\f\\v]'],
    ['[\\d_a-f-]', '[0-9_a-f\\-]'],
    ['[^x^]', '[^x\\^]'],
    ['\\-\\/\\.\\$', '-/\\.\\$'],
    ['(ab)+|c{2,3}', '(ab)+|c{2,3}'],
    ['(a|b)?x', '(a|b)?x'],
  ])('normalises %j to %j', (pattern, normalised) => {
    expect(normaliseRegex(pattern)).toEqual({ pattern: normalised });
  });

  it.each([
    ['(a*)*'],
    ['(a|a)*'],
    ['(?:a)'],
    ['(?<n>a)'],
    ['a(?!b)'],
    ['\\B'],
    ['\\p{L}'],
    ['\\u0041'],
    ['\\x41'],
    ['\\cA'],
    ['\\0'],
    ['a{256}'],
    ['a{3,2}'],
    ['a{'],
    ['a}'],
    [']'],
    ['[]'],
    ['[a'],
    ['(a'],
    ['a)'],
    ['*'],
    ['^*'],
    ['a**'],
    ['a{2}?'],
    ['[[:alpha:]]'],
    ['[\\D]'],
    ['[a-c-e]'],
    ['[z-a]'],
    ['[\\d-z]'],
    ['\\'],
    ['\ud800'],
  ])('refuses %j', (pattern) => {
    expect(normaliseRegex(pattern)).toEqual({ error: expect.any(String) });
  });

  it('only produces patterns JavaScript compiles, and normalising twice changes nothing', () => {
    const pieces = [
      'a',
      'b',
      'é',
      '😀',
      '.',
      '^',
      '$',
      '|',
      '(',
      ')',
      '[',
      ']',
      '^',
      '-',
      '*',
      '+',
      '?',
      '{',
      '}',
      '{2}',
      '{1,3}',
      '\\',
      '\\d',
      '\\W',
      '\\-',
      '\\.',
      ',',
    ];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 12 }), (parts) => {
        const result = normaliseRegex(parts.join(''));
        if ('error' in result) return;
        expect(() => toJsRegExp(result.pattern)).not.toThrow();
        expect(normaliseRegex(result.pattern)).toEqual(result);
        const folded = normaliseRegex(parts.join(''), true);
        if ('pattern' in folded) expect(() => toJsRegExp(folded.pattern)).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });
});

describe('conditions agree with the reference matcher', () => {
  const agree = (generated: Query, batch: unknown[]) => {
    const parsed = parseConditions(generated, '');
    expect(parsed.errors).toEqual([]);
    return batch.filter((document) => {
      const expected = referenceMatches(generated, document);
      expect(matches(parsed.condition!, document)).toBe(expected);
      return expected;
    }).length;
  };

  it('matches exactly when the reference does, over generated queries and documents', () => {
    let matched = 0;
    fc.assert(
      fc.property(queries, fc.array(documents, { minLength: 1, maxLength: 6 }), (generated, batch) => {
        matched += agree(generated, batch);
      }),
      { numRuns: 10_000 },
    );
    expect(matched).toBeGreaterThan(3000); // the cases are not all trivially false
  });

  it('matches exactly when the reference does, for one field and its operators', () => {
    const focused = fc
      .constantFrom('a', 'a.b')
      .chain((path) =>
        operatorEntries(path.split('.').length, 1).map((entries) => ({ [path]: Object.fromEntries(entries) })),
      );
    fc.assert(
      fc.property(
        focused,
        fc.array(
          value(3).map((a) => ({ a })),
          { minLength: 1, maxLength: 6 },
        ),
        (generated, batch) => {
          agree(generated, batch);
        },
      ),
      { numRuns: 5_000 },
    );
  });
});

describe('conditionsMatcher in a CASL ability', () => {
  type Rule = RawRuleFrom<AbilityTuple, unknown>;
  const detectSubjectType = (object: Record<PropertyKey, unknown>) => object.__type as string;
  const cordon = (rules: Rule[]) =>
    new Ability(rules, { conditionsMatcher, fieldMatcher: fieldPatternMatcher, detectSubjectType });
  // What @casl/ability 7.0.1 does without our matcher.
  const caslDefault = (rules: Rule[]) =>
    createMongoAbility(rules as RawRuleFrom<AbilityTuple, MongoQuery>[], { detectSubjectType });
  const capped: Rule[] = [{ action: 'read', subject: 'Invoice', conditions: { amount: { $lte: 1000 } } }];
  const either: Rule[] = [
    { action: 'read', subject: 'Task', conditions: { $or: [{ status: 'open' }, { owner: 'u1' }] } },
  ];

  it('does not let $lte match a record without the field', () => {
    expect(cordon(capped).can('read', { __type: 'Invoice' })).toBe(false);
    expect(cordon(capped).can('read', { __type: 'Invoice', amount: 500 })).toBe(true);
    expect(cordon(capped).can('read', { __type: 'Invoice', amount: '500' })).toBe(false);
    expect(caslDefault(capped).can('read', { __type: 'Invoice' })).toBe(true);
  });

  it('honours $or inside conditions', () => {
    expect(cordon(either).can('read', { __type: 'Task', status: 'done', owner: 'u1' })).toBe(true);
    expect(cordon(either).can('read', { __type: 'Task', status: 'done', owner: 'u2' })).toBe(false);
    expect(caslDefault(either).can('read', { __type: 'Task', status: 'open' })).toBe(false);
  });

  it('applies an inverted rule with {} conditions at the type level', () => {
    const ability = cordon([
      { action: 'read', subject: 'Task' },
      { action: 'read', subject: 'Task', inverted: true, conditions: {} },
    ]);
    expect(ability.can('read', 'Task')).toBe(false);
  });

  it('exposes the AST and throws on conditions it cannot match', () => {
    expect(conditionsMatcher({ a: 1 }).ast).toEqual({ kind: 'compare', path: ['a'], operator: 'eq', value: 1 });
    expect(() =>
      cordon([{ action: 'read', subject: 'Task', conditions: { a: { $where: 'x' } } }]).can('read', { __type: 'Task' }),
    ).toThrow(/\$where/);
  });
});
