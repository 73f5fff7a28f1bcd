import { StringDecoder } from 'node:string_decoder';
import { ProblemError } from './errors.ts';

export interface TextLine {
  /** 1-based, counting blank lines too, as an editor numbers them. */
  number: number;
  text: string;
}

/**
 * The lines of a streamed body, read as the consumer asks for them: the request is paused while
 * a line is being handled (backpressure), and only the line in progress is held in memory, up to
 * `maxLineBytes`. Blank lines are skipped; a last line without its newline counts.
 */
export async function* ndjsonLines(
  body: AsyncIterable<Buffer | string>,
  maxLineBytes: number,
): AsyncGenerator<TextLine> {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let number = 0;
  const tooLong = () =>
    new ProblemError('import_line_too_long', `Line ${number + 1} is longer than ${maxLineBytes} bytes`, {
      extensions: { line: number + 1 },
    });
  for await (const chunk of body) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    let newline: number;
    while ((newline = pending.indexOf('\n', start)) !== -1) {
      const text = pending.slice(start, newline);
      start = newline + 1;
      if (Buffer.byteLength(text) > maxLineBytes) throw tooLong();
      number += 1;
      if (text.trim()) yield { number, text };
    }
    pending = pending.slice(start);
    // Measured in UTF-16 units first: cheap, and never below the byte length's half.
    if (pending.length > maxLineBytes || Buffer.byteLength(pending) > maxLineBytes) throw tooLong();
  }
  pending += decoder.end();
  if (pending.trim()) yield { number: number + 1, text: pending };
}
