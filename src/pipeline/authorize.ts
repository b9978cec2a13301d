import { fail, ok, type Result } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import type { Channel } from '../registry/types.ts';
import type { Principal, Target } from '../types.ts';

/** What a principal may do on one channel, once resolved. */
export interface Admission {
  readonly principal: Principal;
  readonly channel: Channel;
  /** kPermission bits */
  readonly permissions: number;
}

/**
 * Stage 3, authorize: resolves the target's domain and channel (ids or routes) and checks that the client has a
 * connection of the needed type (DESIGN.md §5). `need` is a kPermission mask; any one of its bits suffices.
 * A domain other than the client's own is refused as forbidden whether or not it exists, so that a client cannot
 * probe other tenants; an unknown channel of its own domain is "not found".
 */
export function authorize(view: RegistryView, principal: Principal, need: number, target: Target): Result<Admission> {
  let channel: Channel | undefined;
  if (target.domain === null) {
    channel = view.channelById(target.channel);
    if (channel !== undefined && channel.domainId !== principal.domainId) channel = undefined;
  } else {
    const domain = view.domain(target.domain);
    if (domain === undefined || domain.id !== principal.domainId) {
      return fail('FG_ERR_AUTHZ_FORBIDDEN', `client does not belong to domain "${target.domain}"`);
    }
    channel = view.channel(domain.id, target.channel);
  }
  if (channel === undefined) return fail('FG_ERR_NOT_FOUND', `channel "${target.channel}" not found`);
  const permissions = view.permissions(principal.clientId, channel.id);
  if ((permissions & need) === 0) return fail('FG_ERR_AUTHZ_FORBIDDEN', 'client is not connected to this channel for that action');
  return ok({ principal, channel, permissions });
}
