import { toProblem } from './problems.ts';

/** What body-parser hands on: the cause, given a status and `expose` by http-errors. */
const exposed = (cause: Error, status: number, expose = true) =>
  Object.assign(cause, { status, statusCode: status, expose });

describe('toProblem for errors of the body parser', () => {
  it('reads a corrupt compressed body (zlib’s error, no type) as 400 invalid_json', () => {
    const corrupt = exposed(
      Object.assign(new Error('incorrect header check'), { errno: -3, code: 'Z_DATA_ERROR' }),
      400,
    );
    expect(toProblem(corrupt)).toMatchObject({
      code: 'invalid_json',
      status: 400,
      message: expect.stringMatching(/decompress/),
    });
  });

  it('keeps the code of a typed error', () => {
    expect(toProblem(exposed(Object.assign(new Error('too large'), { type: 'entity.too.large' }), 413))).toMatchObject({
      code: 'payload_too_large',
    });
  });

  it('leaves an error not meant for the client, or of a status with no code, unknown (a 500)', () => {
    expect(toProblem(exposed(new Error('secret detail'), 400, false))).toBeUndefined();
    expect(toProblem(exposed(new Error('verify failed'), 403))).toBeUndefined();
    expect(toProblem(new Error('boom'))).toBeUndefined();
  });
});
