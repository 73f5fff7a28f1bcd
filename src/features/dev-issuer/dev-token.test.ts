import { parseTtl } from './dev-token.ts';

describe('parseTtl', () => {
  it.each([
    ['1h', 3600],
    ['15m', 900],
    ['90s', 90],
    ['90', 90],
    ['24h', 86_400],
  ])('reads %s as %i seconds', (text, seconds) => {
    expect(parseTtl(text)).toBe(seconds);
  });

  it.each(['0s', '25h', '1441m', '1d', '-1h', '1.5h', 'an hour', ''])('refuses %s', (text) => {
    expect(parseTtl(text)).toBeUndefined();
  });
});
