/** Types shared across stages; no runtime code. */

export type Protocol = 'http' | 'ws';

/** Where a message goes or a subscription listens, as named on the wire (ids or routes), before resolution. */
export interface Target {
  /** Domain id or route; null for legacy Mainflux paths, where the channel id alone names the channel. */
  readonly domain: string | null;
  readonly channel: string;
  /** Subtopic levels joined by "/", or null for none. May hold "+" / "#" levels only in a subscription. */
  readonly subtopic: string | null;
  readonly wildcard: boolean;
}

/** Who is speaking, once authenticated. */
export interface Principal {
  readonly clientId: string;
  readonly domainId: string;
}

/** An accepted message, as it fans out: the payload is already in the channel's normalised encoding. */
export interface Message {
  readonly domainId: string;
  readonly channelId: string;
  readonly subtopic: string | null;
  readonly publisher: string;
  readonly protocol: Protocol;
  /** Unix time in ms. */
  readonly created: number;
  readonly payload: Uint8Array;
}
