import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WsClient } from './clients.ts';
import { loadConfig, type GatewayConfig, type GatewayOptions } from '../../src/config.ts';
import { createGateway, type Gateway, type GatewayDeps } from '../../src/gateway.ts';
import type { ConnectionType, PayloadFormat } from '../../src/registry/types.ts';

/** A port free right now, for a gateway whose config must name its own address before it starts (redirect URLs). */
export { freePort } from '../../src/cluster/ports.ts';

export interface TestGateway {
  readonly gateway: Gateway;
  readonly config: GatewayConfig;
  readonly http: string;
  readonly ws: string;
  readonly dir: string;
  close(): Promise<void>;
}

/** A real gateway on 127.0.0.1 and a free port, with its own SQLite file in a temp dir; `deps`: its logger, say. */
export async function startGateway(overrides: GatewayOptions = {}, deps: GatewayDeps = {}): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-test-'));
  const config = loadConfig({
    host: '127.0.0.1', httpPort: 0, mqttPort: 0, httpsPort: 0, mqttsPort: 0, store: `sqlite:${join(dir, 'fleetgate.db')}`, mailUrl: `file:${join(dir, 'outbox')}`, logLevel: 'silent', auditLog: 'off', authWorkers: 2, ...overrides,
  });
  const gateway = createGateway(config, deps);
  await gateway.start();
  const base = `127.0.0.1:${gateway.httpPort}`;
  return {
    gateway, config, dir, http: `http://${base}`, ws: `ws://${base}`,
    async close() {
      await gateway.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestClient {
  readonly id: string;
  readonly secret: string;
}

/** A domain with one channel and a few clients connected as asked: the usual cast of a test. */
export async function provisionFleet(gateway: Pick<Gateway, 'provisioning'>, options: { format?: PayloadFormat; route?: string; channelRoute?: string } = {}) {
  const p = gateway.provisioning;
  const domain = await p.createDomain({ name: 'fleet', route: options.route });
  const channel = await p.createChannel(domain.id, { name: 'telemetry', route: options.channelRoute, payload_format: options.format });
  const client = async (name: string, types: ConnectionType[], options: { channelId?: string; secret?: string } = {}): Promise<TestClient> => {
    const channelId = options.channelId ?? channel.id;
    const { client: c, secret } = await p.createClient(domain.id, { name, ...(options.secret && { secret: options.secret }) });
    if (types.length > 0) await p.connect(domain.id, { client_ids: [c.id], channel_ids: [channelId], types });
    return { id: c.id, secret };
  };
  return { domain, channel, client, topic: `m/${domain.id}/c/${channel.id}` };
}

/** A gateway with a fleet, a publishing device, and a WebSocket subscribed to every subtopic of the fleet's channel. */
export async function startWithListener(overrides: GatewayOptions, fleetOptions: Parameters<typeof provisionFleet>[1] = {}) {
  const gw = await startGateway(overrides);
  const fleet = await provisionFleet(gw.gateway, fleetOptions);
  const device = await fleet.client('device', ['publish']);
  const app = await fleet.client('app', ['subscribe']);
  const listener = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}/%23?authorization=${app.secret}`);
  return {
    gw, fleet, device, listener,
    async close() {
      listener.close();
      await gw.close();
    },
  };
}
