import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

/**
 * Raw WebSocket and MQTT clients for the load generators: a handshake, then frames and packets are counted from their
 * headers, never decoded. The generator is the bound of the WS fan-out reference either way (one core, busy), but
 * with the `ws` package, which decodes and emits every message, that bound was 2.8M deliveries/s, with this counter
 * 4.5–12M: the reference's rate is then less the generator's and more the server's.
 */

export interface Opened {
  readonly socket: Socket;
  /** bytes that arrived after the handshake answer, to be counted */
  readonly rest: Buffer;
}

/** Reads from `socket` until `complete(buffered)` returns the length of a full answer (throws: refused). */
function answer(socket: Socket, complete: (b: Buffer) => number | undefined): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buffered = Buffer.concat([buffered, d]);
      try {
        const length = complete(buffered);
        if (length === undefined) return;
        socket.off('data', onData).off('error', reject).off('close', onClose);
        resolve(buffered.subarray(length));
      } catch (err) {
        socket.destroy();
        reject(err as Error);
      }
    };
    const onClose = () => reject(new Error('closed during the handshake'));
    socket.on('data', onData).once('error', reject).once('close', onClose);
  });
}

function open(port: number, first: Buffer): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', noDelay: true }, () => {
      socket.off('error', reject);
      socket.write(first);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/** A WebSocket client: GET with Upgrade, then 101 expected. The accept key is not checked: the server is ours. */
export async function wsOpen(port: number, path: string): Promise<Opened> {
  const socket = await open(port, Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
    + 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n'));
  const rest = await answer(socket, (b) => {
    const end = b.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    const status = b.subarray(0, b.indexOf('\r\n')).toString();
    if (!status.startsWith('HTTP/1.1 101')) throw new Error(`upgrade refused: ${status}`);
    return end + 4;
  });
  return { socket, rest };
}

/**
 * `count` client frames of `size` bytes (binary, masked with a zero key: a valid mask that leaves the payload as is),
 * one buffer to write as a batch.
 */
export function wsClientFrames(size: number, count: number): Buffer {
  if (size >= 126) throw new Error('frames of up to 125 bytes');
  const frame = Buffer.concat([Buffer.from([0x82, 0x80 | size, 0, 0, 0, 0]), Buffer.alloc(size, 0x61)]);
  return Buffer.concat(Array.from({ length: count }, () => frame));
}

export interface MqttConnect {
  readonly clientId: string;
  readonly username?: string;
  readonly password?: string;
  readonly keepalive: number;
}

/** An MQTT 3.1.1 CONNECT, encoded ahead of time so a storm measures the server, not the encoder. */
export function mqttConnectPacket(c: MqttConnect): Buffer {
  return mqttPacket.generate({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: c.clientId, keepalive: c.keepalive,
    ...(c.username !== undefined && { username: c.username }), ...(c.password !== undefined && { password: Buffer.from(c.password) }),
  });
}

/** Connects, sends CONNECT, waits for CONNACK; `returnCode` 0 is accepted. */
export async function mqttOpen(port: number, connectPacket: Buffer): Promise<Opened & { returnCode: number }> {
  const socket = await open(port, connectPacket);
  let returnCode = -1;
  const rest = await answer(socket, (b) => {
    if (b.length < 4) return undefined;
    if (b[0] !== 0x20) throw new Error(`expected CONNACK, got packet type ${b[0]! >> 4}`);
    returnCode = b[3]!;
    return 4;
  });
  return { socket, rest, returnCode };
}

/** SUBSCRIBE to one filter at QoS 0 and wait for its SUBACK (granted, not 0x80). */
export async function mqttSubscribe(opened: Opened, topic: string): Promise<Buffer> {
  opened.socket.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 0 }] }));
  return answer(opened.socket, (b) => {
    const all = Buffer.concat([opened.rest, b]);
    if (all.length < 5) return undefined;
    if (all[0] !== 0x90 || all[4] === 0x80) throw new Error(`subscription refused: ${all.subarray(0, 5).toString('hex')}`);
    return 5 - opened.rest.length;
  });
}

/** Header of one packet at `at`: its total length and whether it is a message, or undefined while incomplete. */
type Header = (b: Buffer, at: number) => { readonly size: number; readonly message: boolean } | undefined;

/** Server-to-client WebSocket frames (unmasked); text, binary and continuation frames count as messages. */
const wsHeader: Header = (b, at) => {
  if (b.length - at < 2) return undefined;
  const opcode = b[at]! & 0x0f;
  const len7 = b[at + 1]! & 0x7f;
  const head = len7 < 126 ? 2 : len7 === 126 ? 4 : 10;
  if (b.length - at < head) return undefined;
  const length = len7 < 126 ? len7 : len7 === 126 ? b.readUInt16BE(at + 2) : Number(b.readBigUInt64BE(at + 2));
  return { size: head + length, message: opcode < 3 };
};

/** MQTT packets: a type byte and a remaining length of 1-4 bytes; PUBLISH counts as a message. */
const mqttHeader: Header = (b, at) => {
  let length = 0;
  for (let i = 1; i <= 4; i++) {
    if (at + i >= b.length) return undefined;
    const byte = b[at + i]!;
    length += (byte & 0x7f) * 128 ** (i - 1);
    if ((byte & 0x80) === 0) return { size: 1 + i + length, message: b[at]! >> 4 === 3 };
  }
  throw new Error('malformed MQTT remaining length');
};

/**
 * Counts messages in a byte stream: returns a function that takes each chunk and answers how many messages began in
 * it. Payloads are skipped, not copied; only a header split between two reads is joined.
 */
export function messageCounter(kind: 'ws' | 'mqtt'): (chunk: Buffer) => number {
  const header = kind === 'ws' ? wsHeader : mqttHeader;
  let skip = 0;
  let carry: Buffer | undefined;
  return (chunk) => {
    let b = chunk;
    let at = 0;
    if (carry !== undefined) {
      b = Buffer.concat([carry, chunk]);
      carry = undefined;
    } else if (skip > 0) {
      at = Math.min(skip, b.length);
      skip -= at;
    }
    let messages = 0;
    while (at < b.length) {
      const h = header(b, at);
      if (h === undefined) {
        carry = b.subarray(at);
        break;
      }
      if (h.message) messages++;
      at += h.size;
    }
    if (at > b.length) skip = at - b.length;
    return messages;
  };
}

/** This process's CPU use since `since` (process.cpuUsage()), in cores: 1 means one core busy all along. */
export function coresUsed(since: NodeJS.CpuUsage, seconds: number): number {
  const u = process.cpuUsage(since);
  return (u.user + u.system) / 1e6 / seconds;
}
