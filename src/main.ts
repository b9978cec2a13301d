#!/usr/bin/env node
// First, before anything loads uWS: refuse a Node release its build has no binary for (ES imports run in order).
import './cli/node-support.ts';
import { Command, Option, type CommanderError } from 'commander';
import { clusterCommand } from './cli/cluster.ts';
import { keysCommand } from './cli/keys.ts';
import { provisionCommand } from './cli/provision.ts';
import { asConfigError } from './cli/startup-error.ts';
import { flagOf, kSettings, loadConfig, type GatewayConfig, type GatewayOptions, type SettingKey } from './config.ts';
import { GatewayError } from './errors.ts';
import { createGateway } from './gateway.ts';
import { createLogger } from './log.ts';
import { kVersion } from './version.ts';

/** The only reader of process.env and argv: flags and FLEETGATE_* -> config -> gateway or CLI command. */
const program = new Command('fleetgate').description('fleetgate: a message gateway for IoT device fleets').showHelpAfterError()
  .version(kVersion, '-V, --version', 'print the version');
for (const [key, setting] of Object.entries(kSettings)) {
  // No commander default: unset flags fall through to the env variable, then to the setting's default.
  program.addOption(new Option(`${flagOf(key as SettingKey)} <value>`, `${setting.doc} (env ${setting.env}, default "${setting.default}")`)
    .helpGroup('Settings (each also a FLEETGATE_* variable; flags win):'));
}
const config = (): GatewayConfig => loadConfig(program.opts<GatewayOptions>(), process.env);

// No default command: `npx fleetgate` alone prints help rather than starting a server that holds the ports.
program.command('serve').description('run the gateway').action(async () => {
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
  // A file, a port or the store the config points at that cannot be had: one line, exit 2 (below).
  await gateway.start().catch((err: unknown) => {
    throw asConfigError(err, cfg);
  });
});

program.addCommand(provisionCommand(config, (text) => process.stdout.write(text + '\n')));
program.addCommand(keysCommand(config, (text) => process.stdout.write(text + '\n')));
program.addCommand(clusterCommand((text) => process.stdout.write(text + '\n')));

// Usage errors (no command, unknown command or option, missing argument) exit 2, as config errors do; --help and
// --version exit 0.
const usageExit = (err: CommanderError): never => process.exit(err.exitCode === 0 ? 0 : 2);
const everyCommand = (cmd: Command): Command[] => [cmd, ...cmd.commands.flatMap(everyCommand)];
for (const cmd of everyCommand(program)) cmd.exitOverride(usageExit);

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof GatewayError) {
    process.stderr.write(`fleetgate: ${err.code}: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`fleetgate: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
