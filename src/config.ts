import { z } from 'zod';
import { GatewayError } from './errors.ts';

/**
 * Every setting in one table: its env variable, its default (as a user would write it), what it means, and a zod
 * schema that turns the string into the typed value. Flags are derived from the key (`httpPort` -> `--http-port`).
 * The README's configuration table lists the same rows; test/unit/config.test.ts checks that it does.
 */
const port = z.union([
  z.literal('off').transform(() => null),
  z.coerce.number().int().min(0).max(65535),
]);
const bytes = z.coerce.number().int().min(1);
const millis = z.coerce.number().int().min(0);

export const kSettings = {
  host: {
    env: 'FLEETGATE_HOST', default: '0.0.0.0', doc: 'address every listener binds to',
    schema: z.string().min(1),
  },
  httpPort: {
    env: 'FLEETGATE_HTTP_PORT', default: '8080', doc: 'HTTP + WebSocket listener port (`off` disables it; `0` picks a free port)',
    schema: port,
  },
  store: {
    env: 'FLEETGATE_STORE', default: 'sqlite:./data/fleetgate.db', doc: 'registry store URL: `sqlite:<path>` or `sqlite::memory:`',
    schema: z.string().regex(/^sqlite:.+/, 'must be sqlite:<path> or sqlite::memory:'),
  },
  storePollInterval: {
    env: 'FLEETGATE_STORE_POLL_INTERVAL', default: '250', doc: 'ms between checks for registry changes made by other processes (the CLI)',
    schema: z.coerce.number().int().min(10),
  },
  adminEmail: {
    env: 'FLEETGATE_ADMIN_EMAIL', default: '', doc: 'email of the admin user created (or updated) at start; empty: no admin, provisioning API refuses all',
    schema: z.union([z.literal(''), z.email()]),
  },
  adminPassword: {
    env: 'FLEETGATE_ADMIN_PASSWORD', default: '', doc: 'password of that admin (at least 8 characters); never logged',
    schema: z.union([z.literal(''), z.string().min(8, 'must be at least 8 characters')]),
  },
  maxPayload: {
    env: 'FLEETGATE_MAX_PAYLOAD', default: '1048576', doc: 'largest message body in bytes (HTTP body, WebSocket message); checked while streaming',
    schema: bytes,
  },
  wsMaxBackpressure: {
    env: 'FLEETGATE_WS_MAX_BACKPRESSURE', default: '1048576', doc: 'bytes a WebSocket subscriber may have queued before it is dropped (close 1013)',
    schema: bytes,
  },
  wsIdleTimeout: {
    env: 'FLEETGATE_WS_IDLE_TIMEOUT', default: '120', doc: 'seconds of silence before a WebSocket is closed (pings are sent automatically); 0 disables',
    schema: z.coerce.number().int().refine((s) => s === 0 || (s >= 8 && s % 4 === 0), 'must be 0, or a multiple of 4 that is at least 8'),
  },
  shutdownTimeout: {
    env: 'FLEETGATE_SHUTDOWN_TIMEOUT', default: '10000', doc: 'ms that SIGTERM waits for in-flight requests before closing anyway',
    schema: millis,
  },
  logLevel: {
    env: 'FLEETGATE_LOG_LEVEL', default: 'info', doc: 'pino level: `fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`',
    schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  },
} as const;

type Settings = typeof kSettings;
export type SettingKey = keyof Settings;
export type GatewayConfig = Readonly<{ [K in SettingKey]: z.output<Settings[K]['schema']> }>;
/** What a user may pass: any subset, as strings (env, flags) or already typed values (tests, embedding). */
export type GatewayOptions = Partial<{ [K in SettingKey]: string | z.output<Settings[K]['schema']> }>;

export function flagOf(key: SettingKey): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/**
 * Builds the one frozen config: defaults, then `FLEETGATE_*` variables from `env`, then `options` (flags).
 * Throws FG_ERR_CONFIG_INVALID naming every bad setting at once.
 */
export function loadConfig(options: GatewayOptions = {}, env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const key of Object.keys(kSettings) as SettingKey[]) {
    const setting = kSettings[key];
    const raw = options[key] ?? env[setting.env] ?? setting.default;
    const parsed = setting.schema.safeParse(typeof raw === 'string' ? raw.trim() : raw);
    if (parsed.success) out[key] = parsed.data;
    else problems.push(`${setting.env} (${flagOf(key)}): ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  }
  if ((out.adminEmail === '') !== (out.adminPassword === '')) {
    problems.push('FLEETGATE_ADMIN_EMAIL and FLEETGATE_ADMIN_PASSWORD must be set together');
  }
  if (problems.length > 0) {
    throw new GatewayError('FG_ERR_CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, { problems });
  }
  return Object.freeze(out) as GatewayConfig;
}
