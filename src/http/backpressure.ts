import type { Response } from 'express';

/** Writes and waits for the client when the socket buffer is full: memory stays flat. */
export function writeWithBackpressure(response: Response, chunk: string): Promise<void> {
  if (response.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      response.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      response.off('drain', onDrain);
      reject(new Error('client went away'));
    };
    response.once('drain', onDrain).once('close', onClose);
  });
}
