import { pino, type Logger } from 'pino';

export type { Logger };

/** Root logger. Credentials are redacted wherever they might be passed by mistake; none is logged on purpose. */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { service: 'fleetgate' },
    redact: { paths: ['authorization', '*.authorization', 'password', '*.password', 'secret', '*.secret'], censor: '[redacted]' },
  });
}
