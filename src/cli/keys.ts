import { Command } from 'commander';
import { keyCipher } from '../auth/key-encryption.ts';
import { retireKey, rotateKeys } from '../auth/keys.ts';
import { cliAudit } from '../audit.ts';
import type { GatewayConfig } from '../config.ts';
import { openStore } from '../registry/open-store.ts';
import type { Store } from '../registry/store.ts';

/**
 * `fleetgate keys list|rotate|retire`: fleetgate's token signing keys, in the store. Running gateways pick the change
 * up from the change log: after `rotate` they sign with the new key and still accept tokens of the old one; after
 * `retire` those tokens are refused at once.
 */
export function keysCommand(config: () => GatewayConfig, out: (text: string) => void): Command {
  const withStore = (fn: (store: Store, cfg: GatewayConfig) => Promise<unknown>) => async () => {
    const cfg = config();
    const store = openStore(cfg.store, cfg.storeBusyTimeout);
    try {
      out(JSON.stringify(await fn(store, cfg), null, 2));
    } finally {
      await store.close();
    }
  };
  const cmd = new Command('keys').description('token signing keys');
  cmd.command('list').description('kid, algorithm and status of each key (no key material)')
    .action(withStore(async (store) => (await store.listSigningKeys()).map(({ kid, alg, status, createdAt }) => ({ kid, alg, status, created_at: createdAt }))));
  cmd.command('rotate').description('add a new signing key; the current one keeps verifying until retired')
    .action(withStore(async (store, cfg) => {
      const active = await rotateKeys(store, cfg.jwtAlgorithm, keyCipher(cfg));
      auditChange(cfg, 'keys.rotate', active);
      return { active };
    }));
  cmd.command('retire').description('stop accepting tokens signed with a key').requiredOption('--kid <kid>')
    .action((o: { kid: string }) => withStore(async (store, cfg) => {
      await retireKey(store, o.kid);
      auditChange(cfg, 'keys.retire', o.kid);
      return { retired: o.kid };
    })());
  return cmd;
}

function auditChange(cfg: GatewayConfig, op: string, kid: string): void {
  const audit = cliAudit(cfg.auditLog);
  audit.change({ op, ids: { kid } });
  audit.close();
}
