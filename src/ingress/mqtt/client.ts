import type { Client } from 'aedes';
import type { Failure } from '../../errors.ts';
import type { Principal, Target } from '../../types.ts';
import type { ExpiryTimer } from '../expiry.ts';
import type { MqttInflow } from '../mqtt-inflow.ts';

/** What fleetgate keeps on each aedes client. */
export interface MqttSession {
  principal: Principal;
  /** the CONNECT username, for logs and the audit */
  readonly username: string | undefined;
  /** admitted subscriptions by canonical filter, re-checked when the registry changes */
  readonly subscriptions: Map<string, { readonly target: Target; readonly channelId: string }>;
  expiry: ExpiryTimer | undefined;
}

export const kSession = Symbol('fleetgate.session');
/** a CONNECT refusal found by preConnect that aedes' authenticate step must give (see connect.ts) */
export const kRefusal = Symbol('fleetgate.refusal');
/** the client's delivery counter, bound to its transport once (see deliver.ts) */
export const kDelivered = Symbol('fleetgate.delivered');
/** set once the client is counted as dropped: aedes reports the error once per write that was waiting */
export const kDropped = Symbol('fleetgate.dropped');
export type FleetClient = Client & { [kSession]?: MqttSession; [kRefusal]?: Failure; [kDelivered]?: { inc(): void }; [kDropped]?: true };

/** The connection as fleetgate wrapped it: its transport and remote address. */
export const inflowOf = (client: Client): MqttInflow => client.conn as unknown as MqttInflow;

/** The Error aedes is handed for a refusal: the FG_ERR code leads its message. */
export const refusalError = (failure: Failure): Error => new Error(`${failure.code}: ${failure.message}`);

/** mqtt-packet's parser as aedes keeps it on each client (internals its types do not declare). */
interface ParserInternals {
  _list: { readonly length: number; readonly constructor: { readonly BufferList?: new () => unknown } };
  settings: { readonly protocolVersion?: number; readonly bridgeMode?: boolean } | undefined;
}
const parserOf = (client: Client): ParserInternals | undefined => (client as unknown as { _parser?: ParserInternals })._parser;

/**
 * Hands each packet a client sends to `listener` (called as aedes' own: `this` is mqtt-packet's parser) before aedes
 * handles it, e.g. to rename filters. enforcePacketRules, installed after these, checks every packet before either.
 */
export function onPacketBeforeAedes(client: Client, listener: (this: never, packet: never) => void): void {
  (client as unknown as { _parser: NodeJS.EventEmitter })._parser.prependListener('packet', listener as (...args: unknown[]) => void);
}

/**
 * Idle memory (issue 15), for a new connection: mqtt-packet buffers input in bl's BufferListStream, a full Duplex
 * (~1.1 KiB per connection, and its construction per handshake) of which it uses only the BufferList methods; the
 * same bl's plain BufferList does the same. Left as it is if mqtt-packet's internals are not what this expects.
 */
export function lightenParser(client: Client): void {
  const parser = parserOf(client);
  const Plain = parser?._list?.constructor?.BufferList;
  if (parser !== undefined && Plain !== undefined && parser._list.length === 0) parser._list = new Plain() as ParserInternals['_list'];
}

/** Topic aliases are MQTT 5's: clients of earlier versions share this one, which stays empty. */
const kNoTopicAliases = new Map<number, string>();

/**
 * Idle memory (issue 15), for a connected client: mqtt-packet keeps the whole CONNECT packet (password included) as
 * its parser settings for the connection's life, and reads only these two fields of it; and aedes gives every client
 * a Map for MQTT 5 topic aliases, which no 3.1.1 PUBLISH can set (its packets have no properties).
 */
export function trimConnected(client: Client): void {
  const parser = parserOf(client);
  const settings = parser?.settings;
  if (parser !== undefined && settings !== undefined) parser.settings = { protocolVersion: settings.protocolVersion, bridgeMode: settings.bridgeMode };
  const aliases = client as unknown as { version: number | null; _topicAliases?: Map<number, string> };
  if (aliases.version !== 5 && aliases._topicAliases?.size === 0) aliases._topicAliases = kNoTopicAliases;
}
