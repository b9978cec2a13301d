import { kSettings, type GatewayConfig, type SettingKey } from '../config.ts';
import { GatewayError } from '../errors.ts';

/** what a file error means to an operator, by errno code */
const kFileReasons: Readonly<Record<string, string>> = {
  ENOENT: 'no such file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a directory, not a file',
  ENOTDIR: 'a part of the path is not a directory',
};

/**
 * A start that failed because of what the config points at (a certificate file that is missing or unreadable, TLS
 * material OpenSSL refuses) as a config error naming the setting, so that main.ts prints one line and exits 2.
 * Anything else is returned as it is: a bug keeps its stack trace.
 */
export function asConfigError(err: unknown, config: GatewayConfig): unknown {
  if (err instanceof GatewayError || !(err instanceof Error)) return err;
  const { code, path } = err as NodeJS.ErrnoException;
  if (typeof code !== 'string') return err;
  if (path !== undefined && code in kFileReasons) {
    const setting = settingNaming(config, path);
    if (setting !== undefined) return new GatewayError('FG_ERR_CONFIG_INVALID', `${kSettings[setting].env}: cannot read ${path}: ${kFileReasons[code]}`);
  }
  // createSecureContext: a file that is not PEM, a key that does not match its certificate.
  if (code.startsWith('ERR_OSSL')) {
    const files = (['tlsCert', 'tlsKey', 'tlsClientCa', 'tlsClientCrl'] as const).filter((k) => String(config[k]) !== '').map((k) => kSettings[k].env);
    return new GatewayError('FG_ERR_CONFIG_INVALID', `${files.join(', ')}: ${err.message}`);
  }
  return err;
}

/** The setting whose value is `path` (a file, or one of a list of files). */
function settingNaming(config: GatewayConfig, path: string): SettingKey | undefined {
  return (Object.keys(kSettings) as SettingKey[]).find((key) => {
    const value: unknown = config[key];
    return value === path || (Array.isArray(value) && value.includes(path));
  });
}
