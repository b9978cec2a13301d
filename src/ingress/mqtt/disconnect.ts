import type { Client } from 'aedes';

/** What this reads and replaces on an aedes 2.0.0-beta.1 client. */
interface DisconnectingClient {
  readonly version: number | null;
  readonly connackSent: boolean;
  connected: boolean;
  connecting: boolean;
  readonly closed: boolean;
  disconnect(options?: object, done?: () => void): void;
}

/**
 * aedes 2.0.0-beta.1 writes a server DISCONNECT only to a client it calls `connected`, which it does once the stored
 * queue of a resumed session is sent, well after CONNACK: a packet the client sent meanwhile that ends the connection
 * (an invalid topic alias, a malformed packet, a refusal) closed it without a word. From CONNACK on, the client is told.
 * And nothing follows the DISCONNECT [MQTT-3.14.4-1]: aedes went on writing deliveries until it closed the connection
 * a turn later; now they fail as on a closed connection.
 */
export function disconnectFromConnack(aedesClient: Client): void {
  const client = aedesClient as unknown as DisconnectingClient;
  const disconnect = client.disconnect.bind(client);
  client.disconnect = (options, done) => {
    // aedes' own check, moved earlier; its close() sets `connected` back to false.
    if (client.version === 5 && client.connackSent && !client.connected && !client.closed) client.connected = true;
    disconnect(options, done);
    client.connected = false;
    client.connecting = false;
  };
}
