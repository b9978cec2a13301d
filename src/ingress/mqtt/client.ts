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
