import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { coresUsed, messageCounter, mqttConnectPacket, mqttOpen, mqttSubscribe, wsOpen, type Opened } from './wire.ts';

/**
 * Subscribers that count, run as its own process by bench/scenarios/mixed.ts: `ws` WebSocket subscribers on `path` and
 * `mqtt` MQTT subscribers (QoS 0) on `topic`, one server. Prints {"ready":true} once all are subscribed; then on stdin
 * `start` begins counting and `stop` prints {delivered, ws, mqtt, seconds, rate, closed, cpu}. Closing stdin ends it.
 * `targets` (a JSON file `[{port, path}, ...]`, instead of `ws`, `port` and `path`): one WebSocket subscriber on
 * each, for subscribers spread over instances and channels (bench/experiments/interest.ts).
 */
const { values: a } = parseArgs({
  options: {
    port: { type: 'string' }, 'mqtt-port': { type: 'string' }, path: { type: 'string' }, topic: { type: 'string' },
    username: { type: 'string' }, password: { type: 'string' }, ws: { type: 'string', default: '10' }, mqtt: { type: 'string', default: '10' }, targets: { type: 'string' },
  },
});
const delivered = { ws: 0, mqtt: 0 };
let closed = 0;
const sockets: Socket[] = [];

function count(kind: 'ws' | 'mqtt', { socket, rest }: Opened): void {
  const counter = messageCounter(kind);
  const onData = (chunk: Buffer) => void (delivered[kind] += counter(chunk));
  if (rest.length > 0) onData(rest);
  socket.on('data', onData).on('close', () => closed++);
  sockets.push(socket);
}

const tag = Math.random().toString(36).slice(2, 8);
const wsTargets: { port: number; path: string }[] = a.targets ? JSON.parse(readFileSync(a.targets, 'utf8')) : Array.from({ length: Number(a.ws) }, () => ({ port: Number(a.port), path: a.path! }));
await Promise.all([
  ...wsTargets.map(async (t) => count('ws', await wsOpen(t.port, t.path))),
  ...Array.from({ length: Number(a.mqtt) }, async (_, i) => {
    const opened = await mqttOpen(Number(a['mqtt-port']), mqttConnectPacket({ clientId: `sub-${tag}-${i}`, username: a.username, password: a.password, keepalive: 0 }));
    if (opened.returnCode !== 0) throw new Error(`CONNACK return code ${opened.returnCode}`);
    count('mqtt', { socket: opened.socket, rest: await mqttSubscribe(opened, a.topic!) });
  }),
]);
process.stdout.write('{"ready":true}\n');

let cpu0 = process.cpuUsage();
let started = 0;
for await (const line of createInterface({ input: process.stdin })) {
  if (line === 'start') {
    delivered.ws = delivered.mqtt = 0;
    cpu0 = process.cpuUsage();
    started = performance.now();
  } else if (line === 'stop') {
    const seconds = (performance.now() - started) / 1000;
    const total = delivered.ws + delivered.mqtt;
    process.stdout.write(JSON.stringify({ delivered: total, ...delivered, seconds, rate: total / seconds, closed, cpu: coresUsed(cpu0, seconds) }) + '\n');
  }
}
for (const s of sockets) s.destroy();
process.exit(0);
