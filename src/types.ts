/** Types shared across stages; no runtime code. */

import type { AclRule } from './auth/acl.ts';

export type Protocol = 'http' | 'ws' | 'mqtt';

/** Where a message goes or a subscription listens, as named on the wire (ids or routes), before resolution. */
export interface Target {
  /** Domain id or route; null for legacy Mainflux paths, where the channel id alone names the channel. */
  readonly domain: string | null;
  readonly channel: string;
  /** Subtopic levels joined by "/", or null for none. May hold "+" / "#" levels only in a subscription. */
  readonly subtopic: string | null;
  readonly wildcard: boolean;
}

/** A device or application, by its secret or by an identity provider's token mapped to it (DESIGN.md §4). */
export interface ClientPrincipal {
  readonly kind: 'client';
  readonly id: string;
  readonly domainId: string;
  /** digest of the secret it used, to notice a rotation; null when it came with a token */
  readonly secretDigest: string | null;
  /** Unix ms at which its token stops being accepted (exp + FLEETGATE_JWT_CLOCK_TOLERANCE); null for a secret */
  readonly expiresAt: number | null;
  /** the identity provider's subject when it came with such a token */
  readonly subject?: string;
}

/** A user with a fleetgate access token: may use the channels of the domains it belongs to (DESIGN.md §5). */
export interface UserPrincipal {
  readonly kind: 'user';
  readonly id: string;
  readonly sessionId: string;
  readonly expiresAt: number;
}

/** An identity provider's subject whose rights come with its token (FLEETGATE_OIDC_ACL_CLAIM, _ROLE_ACL). */
export interface ExternalPrincipal {
  readonly kind: 'external';
  /** the token's subject */
  readonly id: string;
  /** rules with %c and %u read as the subject (HTTP, WebSocket) */
  readonly acl: readonly AclRule[];
  /** the same with %c and %u as written, for MQTT to fill with the connection's own names */
  readonly rules: readonly AclRule[];
  readonly expiresAt: number;
}

/** Who is speaking, once authenticated. */
export type Principal = ClientPrincipal | UserPrincipal | ExternalPrincipal;

/** An accepted message, as it fans out: the payload is already in the channel's normalised encoding. */
export interface Message {
  readonly domainId: string;
  readonly channelId: string;
  readonly subtopic: string | null;
  readonly publisher: string;
  readonly protocol: Protocol;
  /** Unix time in ms. */
  readonly created: number;
  /** owned by the message: subscribers and sinks may keep it past the publishing call (see Pipeline.publish) */
  readonly payload: Uint8Array;
  /** set when the MQTT broker of the accepting instance has queued it in the shared session store (ingress/mqtt/cluster.ts) */
  readonly mqtt?: MqttOrigin;
}

/** The accepting broker's identity of a message, so that another instance's deliveries find the copy it queued. */
export interface MqttOrigin {
  /** aedes' brokerId and brokerCounter */
  readonly broker: string;
  readonly counter: number;
  readonly qos: 0 | 1 | 2;
  readonly retain: boolean;
}
