import autocannon from 'autocannon';
import type { AbResult, LoadOptions } from '../lib/ab.ts';
import type { Fleetgate } from '../lib/servers.ts';
import { fmt, summarize, type Summary } from '../lib/stats.ts';
import { startGenerator } from '../load/spawn.ts';
import { kSenmlBody } from './http-publish.ts';

interface Counted {
  readonly delivered: number;
  readonly ws: number;
  readonly mqtt: number;
  readonly rate: number;
  readonly closed: number;
  readonly cpu: number;
}

// No `subscribers` field: that would put this req/s figure in the report's fan-out plot of deliveries/s.
export type MixedResult = AbResult & { deliveries: Summary };

/** A second raw channel for the demo client, made through the REST API as the bench admin: nobody subscribes to it. */
async function quietChannel(gateway: Fleetgate): Promise<string> {
  const base = `http://127.0.0.1:${gateway.port}`;
  const json = { 'content-type': 'application/json' };
  const signIn = await fetch(`${base}/users/tokens/issue`, { method: 'POST', headers: json, body: JSON.stringify(gateway.admin) });
  const headers = { ...json, authorization: `Bearer ${((await signIn.json()) as { access_token: string }).access_token}` };
  const domain = gateway.rawTopic.split('/')[1]!;
  const made = await fetch(`${base}/${domain}/channels`, { method: 'POST', headers, body: JSON.stringify({ name: `quiet-${Date.now()}`, payload_format: 'raw' }) });
  const { id } = (await made.json()) as { id: string };
  const connected = await fetch(`${base}/${domain}/channels/connect`, { method: 'POST', headers, body: JSON.stringify({ client_ids: [gateway.clientId], channel_ids: [id], types: ['publish'] }) });
  if (!made.ok || !connected.ok) throw new Error(`mixed: could not make a second channel (${made.status}, ${connected.status})`);
  return `m/${domain}/c/${id}`;
}

/**
 * Mixed: HTTP publish (autocannon, demo client's secret, raw channel) with `perProtocol` WebSocket and as many MQTT
 * subscribers on the channel, counted by a generator process (bench/load/subscribers.ts). The reference is the same
 * gateway and load publishing to a second raw channel that nobody subscribes to, alternating rounds: the ratio is the
 * publish rate kept while fanning out to 2 × perProtocol subscribers on two protocols, i.e. the cost of fan-out to the
 * publishing path, which no outside reference measures (no single tool takes HTTP in and serves WS and MQTT out).
 * Deliveries per second are reported beside it.
 */
export async function mixed(gateway: Fleetgate, o: LoadOptions, progress: (line: string) => void, perProtocol = 10): Promise<MixedResult> {
  const label = `mixed-http-to-ws+mqtt-${perProtocol}+${perProtocol}`;
  const quiet = await quietChannel(gateway);
  const subscribers = startGenerator('subscribers.ts', {
    port: gateway.port, path: `/ws/${gateway.rawTopic}?authorization=${encodeURIComponent(gateway.secret)}`,
    'mqtt-port': gateway.mqttPort, topic: gateway.rawTopic, username: gateway.clientId, password: gateway.secret, ws: perProtocol, mqtt: perProtocol,
  });
  await subscribers.next();
  const publish = async (topic: string, seconds: number) => {
    const r = await autocannon({
      url: `http://127.0.0.1:${gateway.port}/http/${topic}`, method: 'POST', headers: { authorization: `Client ${gateway.secret}` }, body: kSenmlBody,
      duration: seconds, connections: o.connections, pipelining: o.pipelining,
    });
    return { rps: r.requests.average, requests: r.requests.total, bad: r.non2xx + r.errors + r.timeouts };
  };
  const rates = { fleetgate: [] as number[], reference: [] as number[] };
  const deliveries: number[] = [];
  const loop: number[] = [];
  let errors = 0;
  let closed = 0;
  let lastCpu = 0;
  try {
    await publish(quiet, 1);
    await publish(gateway.rawTopic, 1);
    for (let round = 1; round <= o.rounds; round++) {
      const alone = await publish(quiet, o.duration);
      rates.reference.push(alone.rps);
      errors += alone.bad;
      progress(`${label} round ${round}/${o.rounds} reference ${fmt(alone.rps)} req/s (no subscribers)`);
      await gateway.eventLoopP99();
      subscribers.send('start');
      const fanned = await publish(gateway.rawTopic, o.duration);
      subscribers.send('stop');
      const counted = await subscribers.next<Counted>();
      loop.push(await gateway.eventLoopP99());
      rates.fleetgate.push(fanned.rps);
      deliveries.push(counted.rate);
      errors += fanned.bad;
      closed = counted.closed;
      lastCpu = counted.cpu;
      progress(`${label} round ${round}/${o.rounds} fleetgate ${fmt(fanned.rps)} req/s, ${fmt(counted.rate)} deliveries/s (delivered: ws ${fmt(counted.ws)}, mqtt ${fmt(counted.mqtt)}), subscriber generator ${(counted.cpu * 100).toFixed(0)}% CPU${counted.closed ? `, ${counted.closed} subscribers closed` : ''}`);
    }
  } finally {
    await subscribers.finish();
  }
  const fleetgate = summarize(rates.fleetgate);
  const reference = summarize(rates.reference);
  const delivered = summarize(deliveries);
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors: errors + closed, eventLoopP99: summarize(loop), unit: 'req/s',
    deliveries: delivered,
    note: `${fmt(delivered.median)} deliveries/s ±${(delivered.spread * 100).toFixed(0)}% to ${perProtocol} WS + ${perProtocol} MQTT subscribers; reference: the same publish to a channel without subscribers; subscriber generator ${(lastCpu * 100).toFixed(0)}% CPU`,
  };
}
