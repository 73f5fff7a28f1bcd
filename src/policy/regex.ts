/**
 * The `$regex` subset: patterns that JavaScript (with the `u` and `s` flags) and PostgreSQL's
 * advanced regular expressions read the same way, so the in-memory check and the SQL filter
 * agree. Everything outside it is refused rather than translated by guesswork.
 */

const maxLength = 200;
// PostgreSQL refuses bounds above 255 (RE_DUP_MAX), so a larger one could never reach SQL.
const maxBound = 255;

// Shorthand classes become explicit ASCII sets: JavaScript's \s and (with `iu`) \w reach beyond
// ASCII, PostgreSQL's depend on the locale.
const shorthands: Record<string, { set: string; negated: boolean }> = {
  d: { set: '0-9', negated: false },
  D: { set: '0-9', negated: true },
  w: { set: 'A-Za-z0-9_', negated: false },
  W: { set: 'A-Za-z0-9_', negated: true },
  s: { set: ' \\t\\n\\r\\f\\v', negated: false },
  S: { set: ' \\t\\n\\r\\f\\v', negated: true },
};
const escapable = new Set([...'.*+?()[]{}|^$\\/-']);

const refusedEscapes: Record<string, string> = {
  b: 'word boundaries (\\b, \\B) are not supported',
  B: 'word boundaries (\\b, \\B) are not supported',
  p: 'Unicode property escapes (\\p, \\P) are not supported',
  P: 'Unicode property escapes (\\p, \\P) are not supported',
  u: 'character code escapes (\\u, \\x, \\c, octal) are not supported; write the character itself',
  x: 'character code escapes (\\u, \\x, \\c, octal) are not supported; write the character itself',
  c: 'character code escapes (\\u, \\x, \\c, octal) are not supported; write the character itself',
  k: 'named backreferences are not supported',
};

class RegexError extends Error {}

interface Piece {
  text: string;
  quantified: boolean; // contains a quantifier somewhere inside
  alternated: boolean; // contains | somewhere inside
}

const isAsciiLetter = (character: string) => /^[A-Za-z]$/.test(character);
const hasCase = (character: string) => character.toLowerCase() !== character.toUpperCase();
const foldRefusal =
  'with $options "i", letters in the pattern must be ASCII (case-insensitive matching covers A–Z only)';

/**
 * `$options: "i"` is folded into the pattern as explicit ASCII case classes (`a` → `[aA]`) and
 * both engines then match case-sensitively: JavaScript's Unicode case folding (`ſ` ~ `s`, the
 * Kelvin sign ~ `k`) and PostgreSQL's per-character upper/lower variants disagree beyond ASCII.
 */
class PatternReader {
  readonly characters: string[];
  readonly foldCase: boolean;
  position = 0;

  constructor(pattern: string, foldCase: boolean) {
    this.characters = Array.from(pattern); // code points: an astral character is one atom, as with `u`
    this.foldCase = foldCase;
  }

  /** A literal character outside a class, with its other ASCII case when folding. */
  literal(character: string, text = character): string {
    if (!this.foldCase) return text;
    if (isAsciiLetter(character)) return `[${character.toLowerCase()}${character.toUpperCase()}]`;
    if (hasCase(character)) throw new RegexError(foldRefusal);
    return text;
  }

  /** The other-case counterparts of a class item (a single character, or a range lo–hi). */
  counterparts(low: string, high: string): string {
    if (!this.foldCase) return '';
    const from = low.codePointAt(0)!;
    const to = high.codePointAt(0)!;
    if (to > 0x7f && (from !== to || hasCase(low))) throw new RegexError(foldRefusal);
    const shifted = (lowest: number, highest: number, offset: number) => {
      const start = Math.max(from, lowest);
      const end = Math.min(to, highest);
      if (start > end) return '';
      return start === end
        ? String.fromCharCode(start + offset)
        : `${String.fromCharCode(start + offset)}-${String.fromCharCode(end + offset)}`;
    };
    return shifted(0x41, 0x5a, 0x20) + shifted(0x61, 0x7a, -0x20);
  }

  peek(offset = 0): string | undefined {
    return this.characters[this.position + offset];
  }

  next(): string {
    const character = this.characters[this.position++];
    if (character === undefined) throw new RegexError('the pattern ends too early');
    return character;
  }

  alternation(): Piece {
    const branches = [this.sequence()];
    while (this.peek() === '|') {
      this.position++;
      branches.push(this.sequence());
    }
    return {
      text: branches.map((branch) => branch.text).join('|'),
      quantified: branches.some((branch) => branch.quantified),
      alternated: branches.length > 1 || branches.some((branch) => branch.alternated),
    };
  }

  sequence(): Piece {
    const piece: Piece = { text: '', quantified: false, alternated: false };
    for (
      let character = this.peek();
      character !== undefined && character !== '|' && character !== ')';
      character = this.peek()
    ) {
      const atom = this.atom();
      const quantifier = this.quantifier();
      if (quantifier) {
        if (!atom.repeatable) throw new RegexError(`${quantifier} has nothing to repeat`);
        // A repeated group that can match the same text in several ways makes a backtracking
        // engine (V8's) take exponential time, e.g. (a+)+ or (a|a)* on "aaaa…!".
        if (atom.group && quantifier !== '?' && (atom.piece.quantified || atom.piece.alternated)) {
          throw new RegexError(
            `a repeated group may not contain a quantifier or | (catastrophic backtracking): ${atom.piece.text}${quantifier}`,
          );
        }
        const following = this.peek();
        if (following === '?') throw new RegexError('lazy quantifiers (*?, +?, ??, {n,m}?) are not supported');
        if (following === '*' || following === '+' || following === '{')
          throw new RegexError('a quantifier cannot follow another quantifier');
      }
      piece.text += atom.piece.text + (quantifier ?? '');
      piece.quantified ||= atom.piece.quantified || quantifier !== undefined;
      piece.alternated ||= atom.piece.alternated;
    }
    return piece;
  }

  quantifier(): string | undefined {
    const character = this.peek();
    if (character === '*' || character === '+' || character === '?') {
      this.position++;
      return character;
    }
    if (character !== '{') return undefined;
    const rest = this.characters.slice(this.position).join('');
    const bound = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (!bound) throw new RegexError('a literal { must be escaped as \\{');
    const low = Number(bound[1]);
    const high = bound[2] === undefined ? low : bound[3] ? Number(bound[3]) : low;
    if (low > maxBound || high > maxBound) throw new RegexError(`repetition bounds may not exceed ${maxBound}`);
    if (low > high) throw new RegexError(`the bounds ${bound[0]} are out of order`);
    this.position += bound[0].length;
    return bound[0];
  }

  atom(): { piece: Piece; repeatable: boolean; group: boolean } {
    const character = this.next();
    const plain = (text: string, repeatable = true) => ({
      piece: { text, quantified: false, alternated: false },
      repeatable,
      group: false,
    });
    switch (character) {
      case '^':
      case '$':
        return plain(character, false);
      case '.':
        return plain('.');
      case '[':
        return plain(this.bracket());
      case '(': {
        if (this.peek() === '?')
          throw new RegexError('(?…) groups (lookarounds, named and non-capturing groups) are not supported');
        const inner = this.alternation();
        if (this.peek() !== ')') throw new RegexError('a group is not closed with )');
        this.position++;
        return { piece: { ...inner, text: `(${inner.text})` }, repeatable: true, group: true };
      }
      case ')':
        throw new RegexError('an unmatched ) must be escaped as \\)');
      case '\\': {
        const escaped = this.escape();
        if (escaped.shorthand) return plain(`[${escaped.shorthand.negated ? '^' : ''}${escaped.shorthand.set}]`);
        // `u` mode refuses \- outside a class, and \/ means the same as / everywhere.
        return plain(
          escaped.character === '-' || escaped.character === '/' ? escaped.character : `\\${escaped.character}`,
        );
      }
      case '*':
      case '+':
      case '?':
        throw new RegexError(`${character} has nothing to repeat`);
      case '{':
        throw new RegexError('a literal { must be escaped as \\{');
      case '}':
      case ']':
        throw new RegexError(`a literal ${character} must be escaped as \\${character}`);
      default:
        return plain(this.literal(character));
    }
  }

  escape(): { character: string; shorthand?: { set: string; negated: boolean } } {
    const character = this.peek();
    if (character === undefined) throw new RegexError('the pattern ends with a lone \\');
    this.position++;
    const shorthand = shorthands[character];
    if (shorthand) return { character, shorthand };
    if (escapable.has(character)) return { character };
    if (/^[0-9]$/.test(character))
      throw new RegexError('backreferences and octal escapes (\\1, \\0…) are not supported');
    throw new RegexError(
      refusedEscapes[character] ??
        `the escape \\${character} is not supported; escape only the metacharacters .*+?()[]{}|^$\\/-`,
    );
  }

  bracket(): string {
    let text = '[';
    if (this.peek() === '^') {
      this.position++;
      text += '^';
    }
    const start = this.position;
    while (this.peek() !== ']') {
      if (this.peek() === undefined) throw new RegexError('a [ class is not closed with ]');
      const first = this.position === start;
      const item = this.classCharacter();
      if (item.kind === 'set') {
        text += item.text;
        continue;
      }
      const isRange = this.peek() === '-' && this.peek(1) !== ']' && this.peek(1) !== undefined;
      if (item.kind === 'dash' && !first && this.peek() !== ']')
        throw new RegexError('a literal - inside [ ] must be first, last or escaped as \\-');
      if (!isRange) {
        text += item.text + (item.kind === 'single' ? this.counterparts(item.character, item.character) : '');
        continue;
      }
      if (item.kind === 'dash') throw new RegexError('a range cannot start with an unescaped -');
      this.position++;
      const end = this.classCharacter();
      if (end.kind !== 'single') throw new RegexError('a range must end with a single character (escape - as \\-)');
      if ((item.character.codePointAt(0) ?? 0) > (end.character.codePointAt(0) ?? 0))
        throw new RegexError(`the range ${item.character}-${end.character} is out of order`);
      text += `${item.text}-${end.text}${this.counterparts(item.character, end.character)}`;
    }
    if (this.position === start) throw new RegexError('an empty class [] is not supported; escape a literal ] as \\]');
    this.position++;
    return `${text}]`;
  }

  classCharacter(): { kind: 'single' | 'dash'; character: string; text: string } | { kind: 'set'; text: string } {
    const character = this.next();
    if (character === '[')
      throw new RegexError('a [ inside a class (nested or POSIX [:alpha:] classes) must be escaped as \\[');
    if (character === '-') return { kind: 'dash', character, text: '\\-' };
    if (character === '^') return { kind: 'single', character, text: '\\^' };
    if (character !== '\\') return { kind: 'single', character, text: character };
    const escaped = this.escape();
    if (!escaped.shorthand) return { kind: 'single', character: escaped.character, text: `\\${escaped.character}` };
    if (escaped.shorthand.negated)
      throw new RegexError(`\\${escaped.character} cannot be used inside [ ]; use a negated class [^…]`);
    return { kind: 'set', text: escaped.shorthand.set };
  }
}

/**
 * Validates a `$regex` pattern and rewrites it into the canonical form both engines read alike,
 * case-insensitivity (`foldCase`) included: the result is always matched case-sensitively.
 */
export function normaliseRegex(pattern: string, foldCase = false): { pattern: string } | { error: string } {
  if (pattern.length > maxLength) return { error: `the pattern is longer than ${maxLength} characters` };
  if (!pattern.isWellFormed()) return { error: 'the pattern is not valid Unicode (lone surrogate)' };
  const reader = new PatternReader(pattern, foldCase);
  try {
    const piece = reader.alternation();
    if (reader.position < reader.characters.length) throw new RegexError('an unmatched ) must be escaped as \\)');
    return { pattern: piece.text };
  } catch (error) {
    if (error instanceof RegexError) return { error: error.message };
    throw error;
  }
}

/**
 * `s` because PostgreSQL's `.` matches a newline by default; `u` because PostgreSQL matches
 * characters (code points), not UTF-16 halves, e.g. `^.$` on an emoji.
 */
export function toJsRegExp(normalised: string): RegExp {
  return new RegExp(normalised, 'su');
}
