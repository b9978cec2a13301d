#!/usr/bin/env node
import { Command, Option } from 'commander';
import { clusterCommand } from './cli/cluster.ts';
import { keysCommand } from './cli/keys.ts';
import { provisionCommand } from './cli/provision.ts';
import { flagOf, kSettings, loadConfig, type GatewayConfig, type GatewayOptions, type SettingKey } from './config.ts';
import { GatewayError } from './errors.ts';
import { createGateway } from './gateway.ts';
import { createLogger } from './log.ts';

/** The only reader of process.env and argv: flags and FLEETGATE_* -> config -> gateway or CLI command. */
const program = new Command('fleetgate').description('fleetgate: a message gateway for IoT device fleets').showHelpAfterError();
for (const [key, setting] of Object.entries(kSettings)) {
  // No commander default: unset flags fall through to the env variable, then to the setting's default.
  program.addOption(new Option(`${flagOf(key as SettingKey)} <value>`, `${setting.doc} (env ${setting.env}, default "${setting.default}")`));
}
const config = (): GatewayConfig => loadConfig(program.opts<GatewayOptions>(), process.env);

program.command('serve', { isDefault: true }).description('run the gateway').action(async () => {
  const cfg = config();
  const logger = createLogger(cfg.logLevel);
  const gateway = createGateway(cfg, { logger });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // A watchdog: a graceful stop that cannot finish must still end the process.
    setTimeout(() => {
      logger.error('shutdown did not finish in time: exiting');
      process.exit(1);
    }, cfg.shutdownTimeout + 5000).unref();
    gateway.close().then(() => process.exit(0), (err) => {
      logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Certificates renewed in place (certbot, an operator): new connections use them, open ones keep theirs.
  process.on('SIGHUP', () => void gateway.reloadTls().catch((err: unknown) => logger.error({ err }, 'TLS reload failed: keeping the old material')));
  await gateway.start();
});

program.addCommand(provisionCommand(config, (text) => process.stdout.write(text + '\n')));
program.addCommand(keysCommand(config, (text) => process.stdout.write(text + '\n')));
program.addCommand(clusterCommand((text) => process.stdout.write(text + '\n')));

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof GatewayError) {
    process.stderr.write(`fleetgate: ${err.code}: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fleetgate: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
