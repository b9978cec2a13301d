import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { startLocalCluster } from '../cluster/local-cluster.ts';
import { GatewayError } from '../errors.ts';

/**
 * `fleetgate cluster`: a real cluster on this machine, for trying scale-out (deploy/compose.yaml is the same topology
 * for Docker): nats-server, PostgreSQL, Redis and N instances behind HAProxy. Ctrl-C stops all of it.
 */
export function clusterCommand(out: (text: string) => void): Command {
  return new Command('cluster').description('run N instances behind HAProxy with NATS, PostgreSQL and Redis (Debian packages), until Ctrl-C')
    .addOption(new Option('--instances <n>', 'gateway instances').default('3'))
    .addOption(new Option('--http <port>', 'HTTP/WebSocket port on the balancer (0: a free one)').default('8080'))
    .addOption(new Option('--mqtt <port>', 'MQTT port on the balancer (0: a free one)').default('1883'))
    .addOption(new Option('--https <port>', 'HTTPS/WSS port on the balancer, with FLEETGATE_TLS_CERT').default('8443'))
    .addOption(new Option('--mqtts <port>', 'MQTTS port on the balancer, with FLEETGATE_TLS_CERT').default('8883'))
    .addOption(new Option('--dir <dir>', 'data of PostgreSQL and Redis, kept between runs').default(join(tmpdir(), 'fleetgate-cluster')))
    .action(async (o: { instances: string; http: string; mqtt: string; https: string; mqtts: string; dir: string }) => {
      const instances = Number(o.instances);
      if (!Number.isInteger(instances) || instances < 1 || instances > 16) throw new GatewayError('FG_ERR_CONFIG_INVALID', `--instances: must be 1 to 16, not "${o.instances}"`);
      out(`starting nats-server, PostgreSQL, Redis, ${instances} fleetgate instances and HAProxy (data in ${o.dir}) ...`);
      const cluster = await startLocalCluster({
        dir: o.dir, instances, http: Number(o.http), mqtt: Number(o.mqtt), https: Number(o.https), mqtts: Number(o.mqtts),
        env: process.env, durable: true,
      });
      const f = cluster.frontends;
      out([
        '',
        'fleetgate cluster is up. Public endpoints (HAProxy, TCP mode):',
        `  HTTP + WebSocket   http://localhost:${f.http}    ws://localhost:${f.http}/ws/...`,
        `  MQTT               mqtt://localhost:${f.mqtt}    (MQTT over WebSocket: ws://localhost:${f.http}/mqtt)`,
        ...(f.https === undefined ? [] : [`  HTTPS + WSS        https://localhost:${f.https}   (TLS passes through: mutual TLS is checked by the gateway)`, `  MQTTS              mqtts://localhost:${f.mqtts}`]),
        '',
        'Instances:',
        ...cluster.instances.map((i) => `  ${i.name}  http 127.0.0.1:${i.http}  mqtt 127.0.0.1:${i.mqtt}`),
        '',
        `Shared: store ${cluster.store}   bus ${cluster.bus}   redis ${cluster.redis}`,
        '',
        'Provision a demo device and channel (in another terminal), then paste the commands it prints:',
        `  FLEETGATE_STORE=${cluster.store} FLEETGATE_HTTP_PORT=${f.http} FLEETGATE_MQTT_PORT=${f.mqtt} npx fleetgate provision demo`,
        '',
        'Ctrl-C stops everything.',
      ].join('\n'));
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          out('\nstopping ...');
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await cluster.stop();
      out('stopped');
    });
}
