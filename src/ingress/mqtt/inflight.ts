import type { Client } from 'aedes';

/** What the window reads and replaces on an aedes 2.0.0-beta.1 client. */
interface WindowedClient {
  /** the MQTT 5 client's Receive Maximum (65535 when it set none, and for MQTT 3.1.1) */
  readonly receiveMaximum?: number;
  deliverQoS: (packet: QoSDelivery, done: () => void) => void;
}
interface QoSDelivery {
  qos: number;
  brokerId?: string;
  brokerCounter?: number;
}

const kWindow = Symbol('fleetgate.inflightWindow');

class Window {
  inflight = 0;
  readonly held: QoSDelivery[] = [];
  /** set while aedes' own QoS delivery runs, so that authorizeForward counts what it lets through (see forwarded) */
  delivering = false;
  readonly deliver: WindowedClient['deliverQoS'];
  readonly size: () => number;
  constructor(deliver: WindowedClient['deliverQoS'], size: () => number) {
    this.deliver = deliver;
    this.size = size;
  }

  /** Sends held deliveries while the window has room, oldest first. */
  release(): void {
    while (this.held.length > 0 && this.inflight < this.size()) this.send(this.held.shift()!, noop);
  }

  send(packet: QoSDelivery, done: () => void): void {
    this.delivering = true;
    try {
      this.deliver(packet, done);
    } finally {
      this.delivering = false;
    }
  }
}

type Windowed = WindowedClient & { [kWindow]?: Window };

/**
 * The in-flight window of QoS 1 and 2 deliveries to one subscriber (Mosquitto's `max_inflight_messages`; MQTT 5 Receive
 * Maximum [MQTT-3.3.4-9], which aedes 2.0.0-beta.1 stores but does not enforce): a delivery beyond it waits, in order,
 * until a PUBACK or PUBCOMP frees a slot (see acked). At most `queued` wait (Mosquitto's `max_queued_messages`, which
 * also counts an online client's waiting messages): beyond it the oldest waiting one is dropped and counted, as a
 * persistent session's stored queue drops it. Not a disconnect: publishers outpacing a subscriber's acknowledgements
 * for a moment is not the subscriber's fault (a socket that does not drain is, see FLEETGATE_MQTT_DRAIN_TIMEOUT).
 * Installed on aedes' QoS delivery before any subscription captures it. The stored queue a resumed session gets at
 * CONNECT is sent by aedes on its own path, outside the window.
 */
export function installInflightWindow(aedesClient: Client, limit: number, queued: number, dropped: () => void): void {
  const client = aedesClient as unknown as Windowed;
  const window = new Window(client.deliverQoS, () => Math.min(client.receiveMaximum ?? 65535, limit || Infinity));
  client[kWindow] = window;
  const maxHeld = queued || Infinity;
  client.deliverQoS = (packet, done) => {
    // QoS 0 (a downgraded message) is aedes' QoS 0 path, outside the window.
    if (packet.qos === 0 || (window.held.length === 0 && window.inflight < window.size())) return window.send(packet, done);
    if (window.held.length === maxHeld) {
      window.held.shift();
      dropped();
    }
    window.held.push(packet);
    // The publisher goes on: the delivery waits here, not in its pipeline.
    setImmediate(done);
  };
}

/** authorizeForward let a QoS 1 or 2 delivery through: counted in flight when it came through the window. */
export function forwarded(aedesClient: Client, qos: number): void {
  const window = (aedesClient as unknown as Windowed)[kWindow];
  if (window?.delivering && qos > 0) window.inflight++;
}

/**
 * A persistent session's full stored queue dropped its oldest message (FLEETGATE_MQTT_MAX_QUEUED): if it waits for
 * this client's window, it goes too (sent, its packet id would have no stored copy to go in, and aedes would close the
 * connection). The stored queue holds what is in flight and what waits, so it reaches the limit before the window does.
 */
export function forgetWaiting(aedesClient: Client | undefined, packet: QoSDelivery): void {
  const held = (aedesClient as unknown as Windowed | undefined)?.[kWindow]?.held;
  const at = held?.findIndex((waiting) => waiting.brokerId === packet.brokerId && waiting.brokerCounter === packet.brokerCounter) ?? -1;
  if (at >= 0) held!.splice(at, 1);
}

/** A PUBACK or PUBCOMP from the client (aedes' `ack`): a slot is free. */
export function acked(aedesClient: Client): void {
  const window = (aedesClient as unknown as Windowed)[kWindow];
  if (window === undefined) return;
  window.inflight = Math.max(0, window.inflight - 1);
  window.release();
}

function noop(): void {}
