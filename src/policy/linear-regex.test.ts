import fc from 'fast-check';
import { compileLinear, maxProgramSize } from './linear-regex.ts';
import { normaliseRegex, toJsRegExp } from './regex.ts';

describe('the linear-time matcher', () => {
  const pieces = [
    'a',
    'b',
    'A',
    'é',
    '😀',
    '\n',
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
    '{2}',
    '{1,3}',
    '{0,}',
    '\\d',
    '\\W',
    '\\s',
    '\\-',
    '\\.',
    '\\\\',
    'x',
    'z',
  ];
  const texts = fc
    .array(fc.constantFrom('a', 'b', 'A', 'B', 'é', '😀', '\n', ' ', '1', '-', '.', 'x', 'z', '\\', '_'), {
      maxLength: 12,
    })
    .map((parts) => parts.join(''));

  it('answers exactly as V8 does on every pattern the normaliser accepts, folded or not', () => {
    let compared = 0;
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...pieces), { maxLength: 10 }),
        fc.boolean(),
        fc.array(texts, { minLength: 1, maxLength: 6 }),
        (parts, fold, samples) => {
          const normalised = normaliseRegex(parts.join(''), fold);
          if ('error' in normalised) return;
          const linear = compileLinear(normalised.pattern);
          const reference = toJsRegExp(normalised.pattern);
          for (const text of samples) {
            compared += 1;
            expect([normalised.pattern, text, linear.test(text)]).toEqual([
              normalised.pattern,
              text,
              reference.test(text),
            ]);
          }
        },
      ),
      { numRuns: 20_000 },
    );
    expect(compared).toBeGreaterThan(10_000);
  });

  it('takes linear time where backtracking takes polynomial time', () => {
    const text = 'a'.repeat(20_000);
    const started = performance.now();
    expect(compileLinear('.*.*.*.*.*!').test(text)).toBe(false);
    expect(compileLinear('.*@acme\\.com$').test(text)).toBe(false);
    // A generous bound for a noisy machine; the backtracking engine needs minutes here.
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('refuses programs beyond its size limit', () => {
    expect(() => compileLinear('(abcdefghij){255}(abcdefghij){255}')).toThrow(RangeError);
    expect(maxProgramSize).toBeGreaterThan(1_000);
  });
});
