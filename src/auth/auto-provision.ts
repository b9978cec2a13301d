import type { Logger } from '../log.ts';
import type { Provisioning } from '../registry/service.ts';
import type { Client } from '../registry/types.ts';
import type { RegistryView } from '../registry/view.ts';

/**
 * FLEETGATE_OIDC_AUTO_PROVISION: the client of a verified token's subject that has none, created in `domain` with the
 * subject as name and external id and a random secret nobody is shown. It gets no connections: it may use no channel
 * until an admin connects it. When concurrent first connects race (here or on another instance), the unique external
 * id lets one create it and the others find it (the view is synced after the refused write).
 */
export function autoProvisioner(provisioning: Provisioning, view: RegistryView, domain: string, logger: Logger) {
  return async (subject: string): Promise<Client | undefined> => {
    try {
      const { client } = await provisioning.createClient(domain, { name: subject, external_id: subject });
      logger.info({ subject, domain, client_id: client.id }, 'client auto-provisioned');
      return client;
    } catch (err) {
      const winner = view.clientByExternalId(subject);
      if (winner === undefined) logger.warn({ subject, domain, err: (err as Error).message }, 'client auto-provisioning failed');
      return winner;
    }
  };
}
