/**
 * A linear-time matcher for the normalised `$regex` subset (see regex.ts): Thompson's NFA run
 * as a Pike VM, so a pattern such as `.*.*.*!` costs text length × program size, never the
 * exponential or polynomial backtracking of V8's engine, on which one tenant's policy could stall
 * every request of the process. The subset has no backreferences or lookarounds, so "is there
 * a match" is a regular question and the answer equals `new RegExp(pattern, 'su').test(text)`.
 */

type Instruction =
  | { op: 'char'; test: (code: number) => boolean; next: number }
  | { op: 'split'; next: number; alternative: number }
  | { op: 'jump'; next: number }
  | { op: 'start'; next: number }
  | { op: 'end'; next: number }
  | { op: 'match' };

interface Fragment {
  start: number;
  /** Instructions whose `next` (or `alternative`) still points nowhere: patched to what follows. */
  holes: { at: number; field: 'next' | 'alternative' }[];
}

/** Programs beyond this size are refused at parse time: the cost of a test is text × program. */
export const maxProgramSize = 4_000;

const escapes: Record<string, number> = { t: 9, n: 10, v: 11, f: 12, r: 13 };

class Compiler {
  readonly program: Instruction[] = [];
  private readonly characters: number[];
  private position = 0;

  constructor(pattern: string) {
    this.characters = Array.from(pattern, (character) => character.codePointAt(0)!);
  }

  private emit(instruction: Instruction): number {
    if (this.program.length >= maxProgramSize) throw new RangeError('the pattern is too complex');
    this.program.push(instruction);
    return this.program.length - 1;
  }

  private patch(fragment: Fragment, target: number): void {
    for (const hole of fragment.holes)
      (this.program[hole.at] as unknown as Record<string, number>)[hole.field] = target;
  }

  private peek(): number | undefined {
    return this.characters[this.position];
  }

  compile(): { program: Instruction[]; entry: number } {
    const fragment = this.alternation();
    this.patch(fragment, this.emit({ op: 'match' }));
    return { program: this.program, entry: fragment.start };
  }

  private alternation(): Fragment {
    let fragment = this.sequence();
    while (this.peek() === 0x7c /* | */) {
      this.position++;
      const right = this.sequence();
      const split = this.emit({ op: 'split', next: fragment.start, alternative: right.start });
      fragment = { start: split, holes: [...fragment.holes, ...right.holes] };
    }
    return fragment;
  }

  private sequence(): Fragment {
    let fragment: Fragment | undefined;
    for (let code = this.peek(); code !== undefined && code !== 0x7c && code !== 0x29; code = this.peek()) {
      const piece = this.quantified();
      if (fragment) this.patch(fragment, piece.start);
      fragment = fragment ? { start: fragment.start, holes: piece.holes } : piece;
    }
    if (fragment) return fragment;
    const empty = this.emit({ op: 'jump', next: -1 });
    return { start: empty, holes: [{ at: empty, field: 'next' }] };
  }

  /** An atom with its quantifier; repetition is unrolled into copies of the atom (bounds are at most 255). */
  private quantified(): Fragment {
    const atomStart = this.position;
    const first = this.atom();
    const { low, high } = this.quantifier();
    if (low === 1 && high === 1) return first;
    let unused: Fragment | undefined = first;
    const copy = () => {
      if (unused) {
        const fragment = unused;
        unused = undefined;
        return fragment;
      }
      const saved = this.position;
      this.position = atomStart;
      const fragment = this.atom();
      this.position = saved;
      return fragment;
    };
    return this.repeat(copy, low, high);
  }

  private repeat(copy: () => Fragment, low: number, high: number | undefined): Fragment {
    let result: Fragment | undefined;
    const append = (piece: Fragment) => {
      if (result) this.patch(result, piece.start);
      result = result ? { start: result.start, holes: piece.holes } : piece;
    };
    for (let index = 0; index < low; index++) append(copy());
    if (high === undefined) {
      const body = copy();
      const loop = this.emit({ op: 'split', next: body.start, alternative: -1 });
      this.patch(body, loop);
      append({ start: loop, holes: [{ at: loop, field: 'alternative' }] });
    } else {
      for (let index = low; index < high; index++) {
        const body = copy();
        const optional = this.emit({ op: 'split', next: body.start, alternative: -1 });
        append({ start: optional, holes: [...body.holes, { at: optional, field: 'alternative' }] });
      }
    }
    if (result) return result;
    const empty = this.emit({ op: 'jump', next: -1 });
    return { start: empty, holes: [{ at: empty, field: 'next' }] };
  }

  private quantifier(): { low: number; high: number | undefined } {
    const code = this.peek();
    if (code === 0x2a /* * */) return this.take({ low: 0, high: undefined });
    if (code === 0x2b /* + */) return this.take({ low: 1, high: undefined });
    if (code === 0x3f /* ? */) return this.take({ low: 0, high: 1 });
    if (code !== 0x7b /* { */) return { low: 1, high: 1 };
    const rest = String.fromCodePoint(...this.characters.slice(this.position, this.position + 12));
    const bound = /^\{(\d+)(,(\d*))?\}/.exec(rest)!;
    this.position += bound[0].length;
    const low = Number(bound[1]);
    return { low, high: bound[2] === undefined ? low : bound[3] ? Number(bound[3]) : undefined };
  }

  private take<T>(value: T): T {
    this.position++;
    return value;
  }

  private atom(): Fragment {
    const code = this.characters[this.position++]!;
    const single = (instruction: Instruction): Fragment => {
      const at = this.emit(instruction);
      return { start: at, holes: [{ at, field: 'next' }] };
    };
    switch (code) {
      case 0x5e /* ^ */:
        return single({ op: 'start', next: -1 });
      case 0x24 /* $ */:
        return single({ op: 'end', next: -1 });
      case 0x2e /* . */:
        return single({ op: 'char', test: () => true, next: -1 });
      case 0x5b /* [ */:
        return single({ op: 'char', test: this.bracket(), next: -1 });
      case 0x28 /* ( */: {
        const inner = this.alternation();
        this.position++; // )
        return inner;
      }
      case 0x5c /* \ */: {
        const escaped = this.characters[this.position++]!;
        return single({ op: 'char', test: (candidate) => candidate === escaped, next: -1 });
      }
      default:
        return single({ op: 'char', test: (candidate) => candidate === code, next: -1 });
    }
  }

  private classCode(): number {
    const code = this.characters[this.position++]!;
    if (code !== 0x5c) return code;
    const escaped = String.fromCodePoint(this.characters[this.position++]!);
    return escapes[escaped] ?? escaped.codePointAt(0)!;
  }

  private bracket(): (code: number) => boolean {
    const negated = this.peek() === 0x5e;
    if (negated) this.position++;
    const ranges: [number, number][] = [];
    while (this.peek() !== 0x5d /* ] */) {
      const low = this.classCode();
      if (this.peek() === 0x2d /* - */ && this.characters[this.position + 1] !== 0x5d) {
        this.position++;
        ranges.push([low, this.classCode()]);
      } else {
        ranges.push([low, low]);
      }
    }
    this.position++;
    return (code) => ranges.some(([low, high]) => code >= low && code <= high) !== negated;
  }
}

export interface LinearRegex {
  test(text: string): boolean;
}

/** Compiles a pattern normaliseRegex produced; throws RangeError when the program is too large. */
export function compileLinear(pattern: string): LinearRegex {
  const { program, entry } = new Compiler(pattern).compile();
  return {
    test(text: string): boolean {
      const codes = Array.from(text, (character) => character.codePointAt(0)!);
      let current: number[] = [];
      let next: number[] = [];
      const seen = new Int32Array(program.length).fill(-1);
      // Follows jumps, splits and assertions from `pc` at `position`, collecting character tests.
      const add = (list: number[], pc: number, position: number, generation: number): boolean => {
        const stack = [pc];
        while (stack.length) {
          const at = stack.pop()!;
          if (seen[at] === generation) continue;
          seen[at] = generation;
          const instruction = program[at]!;
          switch (instruction.op) {
            case 'match':
              return true;
            case 'jump':
              stack.push(instruction.next);
              break;
            case 'split':
              stack.push(instruction.alternative, instruction.next);
              break;
            case 'start':
              if (position === 0) stack.push(instruction.next);
              break;
            case 'end':
              if (position === codes.length) stack.push(instruction.next);
              break;
            case 'char':
              list.push(at);
              break;
          }
        }
        return false;
      };
      for (let position = 0; position <= codes.length; position++) {
        // An unanchored search: a new thread may start at every position.
        if (add(current, entry, position, position)) return true;
        if (position === codes.length) break;
        next = [];
        const code = codes[position]!;
        for (const at of current) {
          const instruction = program[at] as Extract<Instruction, { op: 'char' }>;
          if (instruction.test(code) && add(next, instruction.next, position + 1, position + 1)) return true;
        }
        current = next;
      }
      return false;
    },
  };
}
