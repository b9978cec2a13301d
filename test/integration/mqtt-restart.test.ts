import { connect as tcp } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { generate, parser, type Packet } from 'mqtt-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { publish, run } from '../helpers/clients.ts';
import { freePort } from '../helpers/gateway.ts';
import { healthy, spawnLogged } from '../helpers/processes.ts';

// Issue 15 item 1: MQTT sessions, queued QoS 1 messages and retained messages survive a restart of the real CLI
// process (SIGTERM, and SIGKILL), with the default FLEETGATE_MQTT_PERSISTENCE=sqlite; with `memory` they do not.
const kMain = join(import.meta.dirname, '../../dist/main.js');
let dir: string;
let env: NodeJS.ProcessEnv;
let httpPort: number;
let mqttPort: number;
let topic: string;
let device: { id: string; secret: string };
let sender: { id: string; secret: string };
const open: MqttClient[] = [];
let gateway: ReturnType<typeof spawnLogged> | undefined;

const cli = async (...args: string[]) => {
  const res = await run(process.execPath, [kMain, 'provision', ...args], { env });
  expect(res.code, res.stderr).toBe(0);
  return JSON.parse(res.stdout);
};

async function start(extra: NodeJS.ProcessEnv = {}): Promise<void> {
  gateway = spawnLogged(process.execPath, [kMain, 'serve'], { env: { ...env, ...extra } });
  await healthy(httpPort);
}

async function stop(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  const { child, exited } = gateway!;
  child.kill(signal);
  await exited;
  gateway = undefined;
}

/**
 * MQTT.js: resolves once connected, with the CONNACK and what it receives (recorded from the start: a resumed
 * session's queue may arrive in the CONNACK's own segment, before the caller's code runs again).
 */
function connect(options: IClientOptions): Promise<{ client: MqttClient; sessionPresent: boolean; properties?: Record<string, unknown>; seen: Received[] }> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...options });
    open.push(client);
    const seen: Received[] = [];
    client.on('message', (_topic, payload, packet) => seen.push({ name: nameOf(payload), dup: packet.dup, retain: packet.retain }));
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent, properties: connack.properties as Record<string, unknown>, seen }));
    client.once('error', reject);
  });
}
const asDevice = (clientId: string, extra: IClientOptions = {}) => connect({ clientId, clean: false, username: device.id, password: device.secret, ...extra });
const asSender = () => connect({ clientId: `sender-${Math.random()}`, username: sender.id, password: sender.secret });
const pack = (n: string) => JSON.stringify([{ n, v: 1 }]);
const nameOf = (payload: Buffer) => (payload.length === 0 ? '(empty)' : JSON.parse(payload.toString())[0].n as string);
/** A message a client received: its name, and whether it came with DUP or RETAIN set. */
interface Received {
  name: string;
  dup: boolean;
  retain: boolean;
}
const end = (client: MqttClient) => new Promise<void>((resolve) => client.end(false, {}, () => resolve()));

/** Publishes QoS 1 over MQTT (acknowledged) and over HTTP (202), one message per name. */
async function send(mqttNames: string[], httpNames: string[], subtopic = 'x'): Promise<void> {
  const { client } = await asSender();
  for (const name of mqttNames) await client.publishAsync(`${topic}/${subtopic}`, pack(name), { qos: 1 });
  await end(client);
  for (const name of httpNames) expect((await publish(`http://127.0.0.1:${httpPort}`, `/http/${topic}/${subtopic}`, sender.secret, [{ n: name, v: 1 }])).status).toBe(202);
  // A PUBACK (aedes sends it first) and a 202 come before their turn's write to the file (docs/MQTT.md "Persistence"):
  // any later request finds it written.
  await healthy(httpPort);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-mqtt-restart-'));
  [httpPort, mqttPort] = [await freePort(), await freePort()];
  env = {
    ...process.env, FLEETGATE_STORE: `sqlite:${join(dir, 'data', 'fleetgate.db')}`, FLEETGATE_HTTP_PORT: String(httpPort), FLEETGATE_MQTT_PORT: String(mqttPort),
    FLEETGATE_HOST: '127.0.0.1', FLEETGATE_SHUTDOWN_TIMEOUT: '3000', FLEETGATE_LOG_LEVEL: 'warn', FLEETGATE_AUDIT_LOG: 'off', FLEETGATE_AUTH_WORKERS: '1',
  };
  const domain = await cli('domain', 'create', '--name', 'fleet', '--route', 'fleet');
  const channel = await cli('channel', 'create', '--domain', domain.id, '--name', 'commands', '--route', 'commands');
  device = await cli('client', 'create', '--domain', domain.id, '--name', 'sleepy', '--secret', 'sleepy-device-secret').then((c) => ({ id: c.id, secret: 'sleepy-device-secret' }));
  sender = await cli('client', 'create', '--domain', domain.id, '--name', 'backend', '--secret', 'backend-sender-secret').then((c) => ({ id: c.id, secret: 'backend-sender-secret' }));
  await cli('connect', '--domain', domain.id, '--client', device.id, '--channel', channel.id, '--type', 'subscribe');
  await cli('connect', '--domain', domain.id, '--client', sender.id, '--channel', channel.id, '--type', 'publish');
  topic = `m/${domain.id}/c/${channel.id}`;
}, 60_000);

afterEach(async () => {
  for (const client of open.splice(0)) client.end(true);
  if (gateway !== undefined) await stop('SIGKILL');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('MQTT state across restarts (sqlite, the default)', () => {
  it.each([
    ['SIGTERM', 'MQTT 3.1.1 clean session false', {}],
    ['SIGKILL', 'MQTT 3.1.1 clean session false', {}],
    ['SIGTERM', 'MQTT 5 Session Expiry', { protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } }],
    ['SIGKILL', 'MQTT 5 Session Expiry', { protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } }],
  ] as const)('after %s, a %s session is present with its subscription and every queued QoS 1 message', async (signal, _kind, options) => {
    const clientId = `sleepy-${signal}-${'protocolVersion' in options ? 5 : 4}`;
    await start();
    // Subscribed by route: stored under the channel's canonical filter, so messages on ids and routes reach it.
    const first = await asDevice(clientId, options);
    await first.client.subscribeAsync('m/fleet/c/commands/#', { qos: 1 });
    await end(first.client);

    await send(['mqtt-1', 'mqtt-2', 'mqtt-3'], ['http-1', 'http-2']);
    await stop(signal);
    await start();

    const again = await asDevice(clientId, options);
    expect(again.sessionPresent).toBe(true);
    const seen = again.seen;
    await expect.poll(() => seen.map((m) => m.name).sort(), { timeout: 10_000 }).toEqual(['http-1', 'http-2', 'mqtt-1', 'mqtt-2', 'mqtt-3']);
    // its subscription is there: a new message reaches it live
    await send([], ['after-restart']);
    await expect.poll(() => seen.map((m) => m.name), { timeout: 10_000 }).toContain('after-restart');
    expect(seen.filter((m) => m.dup)).toEqual([]);
  });

  it('mosquitto_sub -c -i <id> -q 1: subscribe, stop the gateway, publish, restart, receive', async () => {
    await start();
    const sub = (...extra: string[]) => run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(mqttPort), '-u', device.id, '-P', device.secret, '-c', '-i', 'mosquitto-sleepy', '-q', '1', '-t', `${topic}/#`, ...extra]);
    expect((await sub('-E')).code).toBe(0);
    await send(['one', 'two'], ['three']);
    await stop('SIGTERM');
    await start();
    const received = await sub('-C', '3', '-W', '10');
    expect(received.code).toBe(0);
    expect(received.stdout.trim().split('\n').map((line) => nameOf(Buffer.from(line)))).toEqual(['one', 'two', 'three']);
  });

  it('mosquitto_sub -c -U: a stored subscription unsubscribed by routes stays unsubscribed, also across a restart', async () => {
    await start();
    const first = await asDevice('unsubscriber');
    await first.client.subscribeAsync('m/fleet/c/commands/#', { qos: 1 });
    await end(first.client);
    // The session resumed, a sentinel subscribed and the route-form filter unsubscribed (-d prints the UNSUBACK; stdbuf
    // makes mosquitto_sub write each line at once).
    const sub = spawnLogged('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(mqttPort), '-u', device.id, '-P', device.secret, '-c', '-i', 'unsubscriber', '-q', '1', '-d', '-t', `${topic}/sentinel`, '-U', 'm/fleet/c/commands/#', '-C', '1'], { env });
    await expect.poll(sub.log, { timeout: 10_000 }).toMatch(/received UNSUBACK/);
    // one subscriber, in order: had the filter stayed, "unsubscribed" would have come first
    await send([], ['unsubscribed']);
    await send([], ['sentinel'], 'sentinel');
    expect(await sub.exited).toBe(0);
    expect(sub.log()).toMatch(/sentinel/);
    expect(sub.log()).not.toMatch(/"unsubscribed"/);
    await stop('SIGTERM');
    await start();

    const again = await asDevice('unsubscriber');
    expect(again.sessionPresent).toBe(true);
    const seen = again.seen;
    await send([], ['after-restart']);
    await send([], ['sentinel-after'], 'sentinel');
    await expect.poll(() => seen.map((m) => m.name), { timeout: 10_000 }).toEqual(['sentinel-after']);
  });

  it('redelivers, with DUP set, QoS 1 messages in flight (not acknowledged) when the gateway was killed', async () => {
    await start();
    // A raw MQTT 3.1.1 subscriber that never sends PUBACK.
    const socket = tcp(mqttPort, '127.0.0.1');
    const received: Packet[] = [];
    const p = parser({ protocolVersion: 4 });
    p.on('packet', (packet) => received.push(packet));
    socket.on('data', (d) => p.parse(d));
    socket.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: 'no-acks', keepalive: 60, username: device.id, password: Buffer.from(device.secret) }));
    socket.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${topic}/#`, qos: 1 }] }));
    await expect.poll(() => received.map((packet) => packet.cmd), { timeout: 10_000 }).toEqual(['connack', 'suback']);
    await send(['inflight-1', 'inflight-2'], []);
    await expect.poll(() => received.filter((packet) => packet.cmd === 'publish').length, { timeout: 10_000 }).toBe(2);
    await stop('SIGKILL');
    socket.destroy();
    await start();

    const again = await asDevice('no-acks');
    expect(again.sessionPresent).toBe(true);
    const seen = again.seen;
    await expect.poll(() => seen, { timeout: 10_000 }).toEqual([
      { name: 'inflight-1', dup: true, retain: false },
      { name: 'inflight-2', dup: true, retain: false },
    ]);
  });

  it('keeps a retained message across restarts, and an empty retained publish clears it, also across one', async () => {
    await start();
    const { client } = await asSender();
    await client.publishAsync(`${topic}/state`, pack('kept'), { qos: 1, retain: true });
    await end(client);
    await healthy(httpPort);
    await stop('SIGKILL');
    await start();
    const reader = async () => {
      const { client: r, seen } = await connect({ clientId: `reader-${Math.random()}`, username: device.id, password: device.secret });
      await r.subscribeAsync(`${topic}/#`, { qos: 1 });
      // A message sent after subscribing: whatever came before it was retained.
      await send([], ['marker'], 'live');
      await expect.poll(() => seen.map((m) => m.name), { timeout: 10_000 }).toContain('marker');
      await end(r);
      return seen.map((m) => m.name);
    };
    expect(await reader()).toEqual(['kept', 'marker']);
    const { client: clearer } = await asSender();
    await clearer.publishAsync(`${topic}/state`, '', { qos: 1, retain: true });
    await end(clearer);
    await stop('SIGTERM');
    await start();
    expect(await reader()).toEqual(['marker']);
  });
});

describe('FLEETGATE_MQTT_PERSISTENCE=memory', () => {
  it('loses sessions, queued messages and retained messages at restart', async () => {
    const memory = { FLEETGATE_MQTT_PERSISTENCE: 'memory' };
    await start(memory);
    const first = await asDevice('forgetful');
    await first.client.subscribeAsync(`${topic}/#`, { qos: 1 });
    await end(first.client);
    await send(['queued'], []);
    const { client } = await asSender();
    await client.publishAsync(`${topic}/state`, pack('retained'), { qos: 1, retain: true });
    await end(client);
    // before the restart, the session is there
    const present = await asDevice('forgetful');
    expect(present.sessionPresent).toBe(true);
    await end(present.client);
    await stop('SIGTERM');
    await start(memory);
    const again = await asDevice('forgetful');
    expect(again.sessionPresent).toBe(false);
    const seen = again.seen;
    await again.client.subscribeAsync(`${topic}/#`, { qos: 1 });
    await send([], ['marker'], 'live');
    await expect.poll(() => seen.map((m) => m.name), { timeout: 10_000 }).toContain('marker');
    expect(seen.map((m) => m.name)).toEqual(['marker']);
  });
});
