import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino, type DestinationStream, type Logger } from 'pino';
import { pinoHttp } from 'pino-http';
import type { Config } from '../config.ts';

const acceptableRequestId = /^[A-Za-z0-9._:-]{1,128}$/;

export function createLogger(config: Pick<Config, 'logLevel'>, destination?: DestinationStream): Logger {
  return pino(
    {
      level: config.logLevel,
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers.cookie',
          'res.headers["set-cookie"]',
          '*.token',
          '*.adminApiKey',
        ],
        censor: '[redacted]',
      },
    },
    destination,
  );
}

/** The route template, never the raw URL: paths can carry ids and invitation tokens. */
export function routeTemplate(request: IncomingMessage): string {
  const route = (request as IncomingMessage & { route?: { path?: unknown } }).route;
  return typeof route?.path === 'string' ? route.path : 'unmatched';
}

/** One log line per request, with a request id taken from `X-Request-Id` when it is sane. */
export function requestLogging(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId(request: IncomingMessage, response: ServerResponse) {
      const offered = request.headers['x-request-id'];
      const id = typeof offered === 'string' && acceptableRequestId.test(offered) ? offered : randomUUID();
      response.setHeader('X-Request-Id', id);
      return id;
    },
    // Our serializers see the raw objects: nothing but these fields is ever logged.
    wrapSerializers: false,
    serializers: {
      req: (request: IncomingMessage & { id?: unknown }) => ({
        id: request.id,
        method: request.method,
        remoteAddress: request.socket?.remoteAddress,
      }),
      // Serialized when the response finishes, once Express has matched the route.
      res: (response: ServerResponse) => ({ statusCode: response.statusCode, route: routeTemplate(response.req) }),
    },
    customLogLevel(_request, response, error) {
      if (error || response.statusCode >= 500) return 'error';
      return 'info';
    },
  });
}
