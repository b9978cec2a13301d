import { Decoder, Encoder } from '@msgpack/msgpack';
import type { Message, MqttOrigin, Protocol } from '../types.ts';

/**
 * The bus envelope (msgpack): `{channel, domain, subtopic, publisher, protocol, created, payload}`, `created` in Unix
 * nanoseconds as Magistrala/SuperMQ write it, plus `{broker, counter, qos, retain}` when the accepting MQTT broker queued it
 * in the shared session store (older readers ignore them). One encoder and decoder per process: @msgpack/msgpack reuses their
 * buffers, so an envelope costs one allocation for its bytes.
 */
interface Envelope {
  channel: string;
  domain: string;
  subtopic: string;
  publisher: string;
  protocol: Protocol;
  created: bigint;
  payload: Uint8Array;
  broker?: string;
  counter?: number;
  qos?: number;
  retain?: boolean;
}

const kNanosPerMs = 1_000_000n;
const encoder = new Encoder({ useBigInt64: true });
const decoder = new Decoder({ useBigInt64: true });
const kProtocols: ReadonlySet<string> = new Set<Protocol>(['http', 'ws', 'mqtt']);

export function encodeEnvelope(message: Message): Uint8Array {
  const envelope: Envelope = {
    channel: message.channelId,
    domain: message.domainId,
    subtopic: message.subtopic ?? '',
    publisher: message.publisher,
    protocol: message.protocol,
    created: BigInt(message.created) * kNanosPerMs,
    payload: message.payload,
    ...(message.mqtt !== undefined && { broker: message.mqtt.broker, counter: message.mqtt.counter, qos: message.mqtt.qos, retain: message.mqtt.retain }),
  };
  return encoder.encode(envelope);
}

/** A message from another instance, or undefined when the bytes are not an envelope (never trusted blindly). */
export function decodeEnvelope(bytes: Uint8Array): Message | undefined {
  let e: Partial<Envelope>;
  try {
    e = decoder.decode(bytes) as Partial<Envelope>;
  } catch {
    return undefined;
  }
  if (typeof e !== 'object' || e === null) return undefined;
  const { channel, domain, subtopic, publisher, protocol, created, payload } = e;
  if (typeof channel !== 'string' || typeof domain !== 'string' || typeof subtopic !== 'string' || typeof publisher !== 'string') return undefined;
  if (typeof protocol !== 'string' || !kProtocols.has(protocol) || !(payload instanceof Uint8Array)) return undefined;
  const ms = typeof created === 'bigint' ? Number(created / kNanosPerMs) : typeof created === 'number' ? Math.floor(created / 1e6) : NaN;
  if (!Number.isFinite(ms)) return undefined;
  const mqtt = mqttOrigin(e);
  return { channelId: channel, domainId: domain, subtopic: subtopic === '' ? null : subtopic, publisher, protocol, created: ms, payload, ...(mqtt !== undefined && { mqtt }) };
}

function mqttOrigin({ broker, counter, qos, retain }: Partial<Envelope>): MqttOrigin | undefined {
  if (typeof broker !== 'string' || typeof counter !== 'number' || !Number.isSafeInteger(counter) || counter < 1) return undefined;
  if ((qos !== 0 && qos !== 1 && qos !== 2) || typeof retain !== 'boolean') return undefined;
  return { broker, counter, qos, retain };
}
