import { Command, Option } from 'commander';
import { generateSecret } from '../auth/secret.ts';
import { kConnectionTypes, kPayloadFormats } from '../registry/types.ts';
import { Provisioning, toChannelJson, toClientJson, toConnectionJson, toDomainJson } from '../registry/service.ts';
import { openStore } from '../registry/open-store.ts';
import { RegistryView } from '../registry/view.ts';
import type { GatewayConfig } from '../config.ts';
import { cliAudit } from '../audit.ts';

type Run = (p: Provisioning) => Promise<unknown>;

/**
 * `fleetgate provision ...`: the provisioning API, offline, against the store. A running gateway on the same store
 * picks the changes up from the store's change log within FLEETGATE_STORE_POLL_INTERVAL. Prints JSON.
 */
export function provisionCommand(config: () => GatewayConfig, out: (text: string) => void): Command {
  const run = (fn: Run) => async () => {
    const cfg = config();
    const store = openStore(cfg.store, cfg.storeBusyTimeout);
    const audit = cliAudit(cfg.auditLog);
    try {
      const view = new RegistryView(store);
      await view.load();
      const result = await fn(new Provisioning(store, view, (op, ids) => audit.change({ op, ids })));
      out(typeof result === 'string' ? result : JSON.stringify(result, null, 2));
    } finally {
      audit.close();
      await store.close();
    }
  };
  const cmd = new Command('provision').description('create and connect domains, clients and channels in the store');

  const domain = cmd.command('domain').description('domains');
  domain.command('create').requiredOption('--name <name>').option('--route <route>')
    .action((o: { name: string; route?: string }) => run(async (p) => toDomainJson(await p.createDomain(o)))());
  domain.command('list').action(() => run(async (p) => (await p.listDomains()).map(toDomainJson))());
  domain.command('delete').description('delete a domain with its clients, channels and connections; its clients are disconnected')
    .argument('<domain>', 'id or route')
    .action((ref: string) => run(async (p) => (await p.deleteDomain(ref), { deleted: ref }))());

  const client = cmd.command('client').description('clients (devices and applications)');
  client.command('create').requiredOption('--domain <id|route>').requiredOption('--name <name>')
    .option('--secret <secret>', 'default: a random 128-bit secret').option('--external-id <id>')
    .action((o: { domain: string; name: string; secret?: string; externalId?: string }) => run(async (p) => {
      const { client: c, secret } = await p.createClient(o.domain, { name: o.name, secret: o.secret, external_id: o.externalId });
      return { ...toClientJson(c), secret };
    })());
  client.command('list').requiredOption('--domain <id|route>')
    .action((o: { domain: string }) => run(async (p) => (await p.listClients(o.domain)).map(toClientJson))());

  const clientVerb = (name: string, description: string, fn: (p: Provisioning, domain: string, id: string) => Promise<unknown>) =>
    client.command(name).description(description).argument('<id>', 'client id').requiredOption('--domain <id|route>')
      .action((id: string, o: { domain: string }) => run((p) => fn(p, o.domain, id))());
  clientVerb('disable', 'refuse its credentials and close its live connections', async (p, d, id) => toClientJson(await p.setClientStatus(d, id, 'disabled')));
  clientVerb('enable', 'accept its credentials again', async (p, d, id) => toClientJson(await p.setClientStatus(d, id, 'enabled')));
  clientVerb('delete', 'delete it with its connections; its live connections are closed', async (p, d, id) => (await p.deleteClient(d, id), { deleted: id }));
  client.command('rotate-secret').description('give it a new secret (printed once); the old one stops working and its connections are closed')
    .argument('<id>', 'client id').requiredOption('--domain <id|route>').option('--secret <secret>', 'default: a random 128-bit secret')
    .action((id: string, o: { domain: string; secret?: string }) => run(async (p) => {
      const { client: c, secret } = await p.setClientSecret(o.domain, id, { secret: o.secret ?? generateSecret() });
      return { ...toClientJson(c), secret };
    })());

  const channel = cmd.command('channel').description('channels');
  channel.command('create').requiredOption('--domain <id|route>').requiredOption('--name <name>').option('--route <route>')
    .addOption(new Option('--format <format>', 'payload format').choices(kPayloadFormats).default('senml+json'))
    .action((o: { domain: string; name: string; route?: string; format: (typeof kPayloadFormats)[number] }) =>
      run(async (p) => toChannelJson(await p.createChannel(o.domain, { name: o.name, route: o.route, payload_format: o.format })))());
  channel.command('list').requiredOption('--domain <id|route>')
    .action((o: { domain: string }) => run(async (p) => (await p.listChannels(o.domain)).map(toChannelJson))());

  channel.command('delete').description('delete it with its connections; subscribers on it are disconnected')
    .argument('<id>', 'channel id or route').requiredOption('--domain <id|route>')
    .action((id: string, o: { domain: string }) => run(async (p) => (await p.deleteChannel(o.domain, id), { deleted: id }))());

  cmd.command('connections').description('connections of clients to channels').command('list').requiredOption('--domain <id|route>')
    .option('--client <id>', 'only this client\'s').option('--channel <id|route>', 'only this channel\'s')
    .action((o: { domain: string; client?: string; channel?: string }) =>
      run(async (p) => (await p.listConnections(o.domain, { client: o.client, channel: o.channel })).map(toConnectionJson))());

  cmd.command('connect').description('connect clients to channels')
    .requiredOption('--domain <id|route>').requiredOption('--client <ids...>').requiredOption('--channel <ids...>')
    .addOption(new Option('--type <types...>', 'connection types').choices(kConnectionTypes).default([...kConnectionTypes]))
    .action((o: { domain: string; client: string[]; channel: string[]; type: (typeof kConnectionTypes)[number][] }) =>
      run(async (p) => ({ connected: await p.connect(o.domain, { client_ids: o.client, channel_ids: o.channel, types: o.type }) }))());

  cmd.command('demo').description('create a demo domain, client and channel, connected, and print commands to try them')
    .action(() => run(async (p) => demo(p, config()))());

  return cmd;
}

async function demo(p: Provisioning, config: GatewayConfig): Promise<string> {
  const domain = await p.createDomain({ name: 'demo' });
  const { client, secret } = await p.createClient(domain.id, { name: 'demo-device' });
  const channel = await p.createChannel(domain.id, { name: 'demo-channel' });
  await p.connect(domain.id, { client_ids: [client.id], channel_ids: [channel.id] });
  const host = config.host === '0.0.0.0' ? 'localhost' : config.host;
  const base = `${host}:${config.httpPort ?? 8080}`;
  const mqtt = `-h ${host} -p ${config.mqttPort ?? 1883}`;
  const topic = `m/${domain.id}/c/${channel.id}`;
  const senml = '[{"bn":"demo-sensor:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2},{"n":"current","t":-4,"v":1.3}]';
  return [
    `domain   ${domain.id}`,
    `client   ${client.id}`,
    `secret   ${secret}   (shown once)`,
    `channel  ${channel.id}`,
    '',
    '# subscribe over WebSocket (in one terminal):',
    `npx --yes wscat -c 'ws://${base}/ws/${topic}?authorization=${secret}'`,
    '',
    '# publish SenML over HTTP (in another):',
    `curl -sSi -X POST -H "Content-Type: application/senml+json" -H "Authorization: Client ${secret}" http://${base}/http/${topic} -d '${senml}'`,
    '',
    '# the same over MQTT (Debian: apt-get install mosquitto-clients):',
    `mosquitto_sub -u ${client.id} -P ${secret} -t ${topic} ${mqtt}`,
    `mosquitto_pub -I demo -u ${client.id} -P ${secret} -t ${topic} ${mqtt} -m '${senml}'`,
  ].join('\n');
}
