import { aclPermissions } from '../auth/acl.ts';
import { fail, ok, type Failure, type Result } from '../errors.ts';
import type { RegistryView } from '../registry/view.ts';
import { kPermission, type Channel } from '../registry/types.ts';
import type { Principal, Target } from '../types.ts';

/** What a principal may do on one channel, once resolved. */
export interface Admission {
  readonly principal: Principal;
  readonly channel: Channel;
  /** kPermission bits */
  readonly permissions: number;
}

/**
 * Stage 3, authorize: resolves the target's domain and channel (ids or routes) and checks the right (DESIGN.md §5):
 * a client needs a connection of the needed type; a user needs to belong to the channel's domain (an admin belongs to
 * all). `need` is a kPermission mask; any one of its bits suffices. A domain the principal is not in is refused as
 * forbidden whether or not it exists, so that nobody can probe other tenants; an unknown channel of a domain the
 * principal is in is "not found".
 */
export function authorize(view: RegistryView, principal: Principal, need: number, target: Target): Result<Admission> {
  let channel: Channel | undefined;
  if (target.domain === null) {
    channel = view.channelById(target.channel);
    if (channel !== undefined && !inDomain(view, principal, channel.domainId)) channel = undefined;
  } else {
    const domain = view.domain(target.domain);
    if (domain === undefined || !inDomain(view, principal, domain.id)) return fail('FG_ERR_AUTHZ_FORBIDDEN', `not a member of domain "${target.domain}"`);
    channel = view.channel(domain.id, target.channel);
  }
  if (channel === undefined) {
    // Without a domain of its own, an external principal learns nothing about which channels exist.
    return principal.kind === 'external' ? fail('FG_ERR_AUTHZ_FORBIDDEN') : fail('FG_ERR_NOT_FOUND', `channel "${target.channel}" not found`);
  }
  const permissions =
    principal.kind === 'client' ? view.permissions(principal.id, channel.id)
    : principal.kind === 'user' ? kPermission.publish | kPermission.subscribe
    : aclPermissions(view, principal.acl, channel, target.subtopic);
  return lacking(permissions, need) ?? ok({ principal, channel, permissions });
}

/** The refusal when `permissions` hold none of the `need` bits (kPermission), else undefined. */
export function lacking(permissions: number, need: number): Failure | undefined {
  return (permissions & need) === 0 ? fail('FG_ERR_AUTHZ_FORBIDDEN', 'not allowed on this channel for that action') : undefined;
}

/** An external principal's rights are its rules, whatever the domain; others must be in the channel's domain. */
function inDomain(view: RegistryView, principal: Principal, domainId: string): boolean {
  switch (principal.kind) {
    case 'external':
      return true;
    case 'client':
      return principal.domainId === domainId;
    case 'user':
      return view.isAdmin(principal.id) || view.isMember(principal.id, domainId);
  }
}
