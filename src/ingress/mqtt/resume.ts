import type { Client } from 'aedes';

/** What aedes 2.0.0-beta.1 keeps on a client about its session (set from the CONNECT before authenticate runs). */
interface SessionFlags {
  readonly version: number | null;
  /** true: the session ends with this connection (MQTT 5: Session Expiry Interval 0) */
  clean: boolean;
  /** the CONNECT's Clean Start flag */
  readonly _cleanStart?: boolean;
}

const kResumedQueue = Symbol('fleetgate.resumedQueue');
type Resuming = SessionFlags & { [kResumedQueue]?: true };

/**
 * MQTT 5: a CONNECT with Clean Start 0 and no Session Expiry Interval resumes the stored session, which then ends when
 * this connection closes (expiry 0, MQTT 5 §3.1.2.11.2). Its queued messages are still to be delivered now, as mosquitto
 * does; aedes reads `clean` (expiry 0) as "drop the queue" when it empties it after CONNACK. So `clean` is false until
 * the queue is emptied (see queueDelivered), then true again. The session's end follows its expiry interval, kept 0.
 * Called once authenticated, before aedes restores the session.
 */
export function keepResumedQueue(aedesClient: Client): void {
  const client = aedesClient as unknown as Resuming;
  if (client.version !== 5 || client._cleanStart !== false || !client.clean) return;
  client.clean = false;
  client[kResumedQueue] = true;
}

/** aedes' `clientReady` (the queue emptied): the resumed session is again one that ends with the connection. */
export function queueDelivered(aedesClient: Client): void {
  const client = aedesClient as unknown as Resuming;
  if (client[kResumedQueue] === undefined) return;
  delete client[kResumedQueue];
  client.clean = true;
}
