import { h, show } from './dom.js';

const escapePointer = (key) => key.replaceAll('~', '~0').replaceAll('/', '~1');
const whitespace = /[ \t\n\r]*/y;
// JSON strings may not hold raw control characters: the pattern names them to refuse them.
// eslint-disable-next-line no-control-regex
const stringToken = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const literalToken = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null/y;

/**
 * Where each JSON pointer's value stands in the text: `{ start, end }` offsets, the start taken at
 * the member's key when the value is an object member. Throws a SyntaxError with `position` where
 * the text stops being JSON.
 */
export function locatePointers(text) {
  const spans = new Map();
  let index = 0;
  const fail = (message) => {
    const error = new SyntaxError(message);
    error.position = index;
    throw error;
  };
  const token = (pattern) => {
    pattern.lastIndex = index;
    const match = pattern.exec(text);
    if (!match) return undefined;
    index = pattern.lastIndex;
    return match[0];
  };
  const skip = () => token(whitespace);
  const expect = (character, message) => {
    skip();
    if (text[index] !== character) fail(message);
    index += 1;
  };
  const value = (pointer, keyStart) => {
    skip();
    const start = index;
    const character = text[index];
    if (character === '{') {
      index += 1;
      skip();
      if (text[index] === '}') index += 1;
      else
        for (;;) {
          skip();
          const memberStart = index;
          const key = token(stringToken);
          if (key === undefined) fail('expected a property name in double quotes');
          expect(':', "expected ':' after the property name");
          value(`${pointer}/${escapePointer(JSON.parse(key))}`, memberStart);
          skip();
          if (text[index] === ',') index += 1;
          else if (text[index] === '}') {
            index += 1;
            break;
          } else fail("expected ',' or '}'");
        }
    } else if (character === '[') {
      index += 1;
      skip();
      if (text[index] === ']') index += 1;
      else
        for (let item = 0; ; item += 1) {
          value(`${pointer}/${item}`);
          skip();
          if (text[index] === ',') index += 1;
          else if (text[index] === ']') {
            index += 1;
            break;
          } else fail("expected ',' or ']'");
        }
    } else if (token(stringToken) === undefined && token(literalToken) === undefined) {
      fail(index >= text.length ? 'unexpected end of the text' : 'expected a JSON value');
    }
    spans.set(pointer, { start: keyStart ?? start, end: index });
  };
  value('');
  skip();
  if (index < text.length) fail('unexpected text after the JSON value');
  return spans;
}

/** The span of a pointer, or of its nearest ancestor present in the text (a missing member: its object). */
export function spanOf(spans, pointer) {
  let at = pointer;
  for (;;) {
    const span = spans.get(at);
    if (span || at === '') return span;
    at = at.slice(0, at.lastIndexOf('/'));
  }
}

const lineAt = (text, offset) => text.slice(0, offset).split('\n').length;

/**
 * A JSON text area with line numbers, whose errors (a syntax error, or the API's `errors[]` by
 * JSON pointer) are marked at the line of the field they name; choosing an error selects the field.
 */
export class JsonEditor {
  constructor({ label, rows = 18, value = '' }) {
    this.gutter = h('ol', { class: 'gutter', 'aria-hidden': 'true' });
    this.textarea = h('textarea', {
      class: 'code',
      rows,
      wrap: 'off',
      spellcheck: 'false',
      autocomplete: 'off',
      'aria-label': label,
      oninput: () => this.renumber([]),
      onscroll: () => {
        this.gutter.scrollTop = this.textarea.scrollTop;
      },
    });
    this.errors = h('ul', { class: 'field-errors', 'aria-live': 'polite' });
    this.element = h(
      'div',
      { class: 'json-editor' },
      h('div', { class: 'editor' }, this.gutter, this.textarea),
      this.errors,
    );
    this.value = value;
  }

  get value() {
    return this.textarea.value;
  }

  set value(text) {
    this.textarea.value = text;
    this.clearErrors();
  }

  clearErrors() {
    show(this.errors);
    this.textarea.removeAttribute('aria-invalid');
    this.renumber([]);
  }

  renumber(errorLines) {
    const count = this.textarea.value.split('\n').length;
    const marked = new Map(errorLines.map((line) => [line.line, line.detail]));
    show(
      this.gutter,
      Array.from({ length: count }, (_, index) =>
        h('li', marked.has(index + 1) ? { class: 'error', title: marked.get(index + 1) } : {}, String(index + 1)),
      ),
    );
    this.gutter.scrollTop = this.textarea.scrollTop;
  }

  /** Parses the text, marking a syntax error at its line; returns undefined when it is not JSON. */
  parse() {
    this.clearErrors();
    try {
      locatePointers(this.value);
      return JSON.parse(this.value);
    } catch (error) {
      const position = error.position ?? 0;
      this.mark([{ start: position, end: position + 1, pointer: '', detail: `not JSON: ${error.message}` }]);
      return undefined;
    }
  }

  /**
   * Shows the API's field errors at their fields: `prefix` is the part of the body's pointer that
   * leads to this editor's document (e.g. `/suite`). Returns the errors that point elsewhere.
   */
  showProblem(problem, prefix = '') {
    const items = Array.isArray(problem?.errors) ? problem.errors : [];
    const mine = items.filter(
      (item) =>
        item.in !== 'query' &&
        item.in !== 'params' &&
        (item.pointer === prefix || item.pointer?.startsWith(`${prefix}/`)),
    );
    let spans;
    try {
      spans = locatePointers(this.value);
    } catch {
      spans = new Map();
    }
    this.mark(
      mine.map((item) => {
        const pointer = item.pointer.slice(prefix.length);
        const span = spanOf(spans, pointer) ?? { start: 0, end: 0 };
        return { ...span, pointer, detail: item.detail };
      }),
    );
    return items.filter((item) => !mine.includes(item));
  }

  mark(errors) {
    const text = this.value;
    const located = errors.map((error) => ({ ...error, line: lineAt(text, error.start) }));
    if (located.length) this.textarea.setAttribute('aria-invalid', 'true');
    this.renumber(located);
    show(
      this.errors,
      located.map((error) =>
        h(
          'li',
          { dataset: { pointer: error.pointer, line: String(error.line) } },
          h(
            'button',
            { type: 'button', class: 'link', onclick: () => this.select(error) },
            `line ${error.line}`,
            error.pointer ? ` · ${error.pointer}` : '',
          ),
          ' ',
          h('span', { class: 'detail' }, error.detail),
        ),
      ),
    );
  }

  select({ start, end, line }) {
    this.textarea.focus();
    this.textarea.setSelectionRange(start, end);
    const lineHeight = parseFloat(getComputedStyle(this.textarea).lineHeight) || 18;
    this.textarea.scrollTop = Math.max(0, (line - 3) * lineHeight);
  }
}
