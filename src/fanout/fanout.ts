import type { Bus } from '../bus/bus.ts';
import type { Metrics } from '../metrics.ts';
import type { Message } from '../types.ts';
import type { Subscriptions } from './subscriptions.ts';

/** The MQTT broker as fan-out sees it: hands a message to its subscribers. */
export interface MqttFanout {
  /**
   * `routed`: aedes has already routed the message itself (it was published over MQTT on this instance). true: the
   * broker sends it to the bus itself (sessions shared by the instances: once it is queued, ingress/mqtt/cluster.ts).
   */
  deliver(message: Message, routed: boolean): boolean;
  /** A message another instance accepted. */
  arrive(message: Message): void;
}

/**
 * Stage 5, fan out: a message accepted here goes to this instance's WebSocket and MQTT subscribers, then once to the
 * bus for the other instances; a message from the bus goes to this instance's subscribers only. Nothing waits.
 */
export class Fanout {
  private mqtt: MqttFanout | undefined;
  private readonly subscriptions: Subscriptions;
  private readonly bus: Bus;
  private readonly metrics: Metrics;

  constructor(subscriptions: Subscriptions, bus: Bus, metrics: Metrics) {
    this.subscriptions = subscriptions;
    this.bus = bus;
    this.metrics = metrics;
  }

  /** The broker is created after the pipeline it calls into, so it joins here once it exists. */
  attachMqtt(mqtt: MqttFanout): void {
    this.mqtt = mqtt;
  }

  publish(message: Message): void {
    this.metrics.delivered(this.subscriptions.deliver(message));
    if (this.mqtt?.deliver(message, message.protocol === 'mqtt') !== true) this.bus.publish(message);
  }

  /** A message another instance accepted. */
  arrive = (message: Message): void => {
    this.metrics.busReceived();
    this.metrics.delivered(this.subscriptions.deliver(message));
    this.mqtt?.arrive(message);
  };
}
