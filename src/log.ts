import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

/**
 * Root logger, to stdout unless given a `destination` (tests, embedding). Credentials are redacted wherever they might
 * be passed by mistake; none is logged on purpose.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: 'fleetgate' },
    redact: { paths: ['authorization', '*.authorization', 'password', '*.password', 'secret', '*.secret', 'token', '*.token'], censor: '[redacted]' },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
