import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { coresUsed, mqttConnectPacket, mqttOpen, mqttSubscribe, wsOpen } from './wire.ts';

/**
 * Idle connections, run as its own process by bench/scenarios/idle.ts: opens `count` WebSocket connections on `path`
 * or MQTT connections (keepalive 60 s, then one QoS 0 subscription to `topic`, as a device listening for commands),
 * `concurrency` handshakes at a time, prints {connected, failed, firstError, seconds, cpu}, and holds them, silent but
 * for MQTT PINGREQs, until its stdin closes.
 */
const { values: a } = parseArgs({
  options: {
    protocol: { type: 'string' }, port: { type: 'string' }, path: { type: 'string', default: '/' }, topic: { type: 'string' },
    username: { type: 'string' }, password: { type: 'string' }, count: { type: 'string' }, concurrency: { type: 'string', default: '200' },
  },
});
const port = Number(a.port);
const count = Number(a.count);
const tag = Math.random().toString(36).slice(2, 8);
const sockets: Socket[] = [];
let failed = 0;
let firstError = '';
let next = 0;

async function open(i: number): Promise<Socket> {
  if (a.protocol === 'ws') return (await wsOpen(port, a.path!)).socket;
  const opened = await mqttOpen(port, mqttConnectPacket({ clientId: `idle-${tag}-${i}`, username: a.username, password: a.password, keepalive: 60 }));
  if (opened.returnCode !== 0) throw new Error(`CONNACK return code ${opened.returnCode}`);
  if (a.topic) await mqttSubscribe(opened, a.topic);
  return opened.socket;
}

async function opener(): Promise<void> {
  while (next < count) {
    try {
      const socket = await open(next++);
      socket.on('data', () => {}).on('error', () => {});
      sockets.push(socket);
    } catch (err) {
      failed++;
      firstError ||= (err as Error).message;
    }
  }
}

const cpu0 = process.cpuUsage();
const started = performance.now();
await Promise.all(Array.from({ length: Math.min(Number(a.concurrency), count) }, opener));
const seconds = (performance.now() - started) / 1000;
process.stdout.write(JSON.stringify({ connected: sockets.length, failed, firstError, seconds, cpu: coresUsed(cpu0, seconds) }) + '\n');
// Within the 1.5 × keepalive after which a broker closes a silent MQTT client.
const ping = Buffer.from([0xc0, 0x00]);
const pinger = a.protocol === 'mqtt' ? setInterval(() => sockets.forEach((s) => s.write(ping)), 30_000) : undefined;
for await (const _ of createInterface({ input: process.stdin })) { /* commands: none yet; stdin closing ends the hold */ }
clearInterval(pinger);
for (const s of sockets) s.destroy();
process.exit(0);
