import type { Response } from 'express';

/** The client closed the connection: what is left of a streamed response has nowhere to go. */
export class ClientGone extends Error {
  constructor() {
    super('client went away');
  }
}

/**
 * Writes and waits for the client when the socket buffer is full: memory stays flat. Rejects with
 * ClientGone once the connection is closed, so the caller's loop stops and its transaction (and
 * server-side cursor) ends. A connection closed before this write, while the caller waited for
 * the database, has fired its 'close' already and will never 'drain': that is checked first.
 */
export function writeWithBackpressure(response: Response, chunk: string): Promise<void> {
  if (response.destroyed || response.writableEnded) return Promise.reject(new ClientGone());
  if (response.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      response.off('close', onClose);
      resolve();
    };
    const onClose = () => {
      response.off('drain', onDrain);
      reject(new ClientGone());
    };
    response.once('drain', onDrain).once('close', onClose);
  });
}
