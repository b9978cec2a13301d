import { createServer as createNetServer, type Server } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server as TlsServer } from 'node:tls';
import uWS, { type TemplatedApp, type us_listen_socket } from 'uWebSockets.js';
import type { PeerCertificate } from '../auth/certificate.ts';
import type { Logger } from '../log.ts';
import { readProxyHeader, trustedProxies } from './proxy-protocol.ts';
import { readTlsMaterial, type TlsMaterial } from '../tls/material.ts';
import { createTlsServer } from '../tls/server.ts';
import { privateSocketPath, relayTo, type PeerCertificates } from '../tls/terminator.ts';
import { kSettings, type GatewayConfig } from '../config.ts';
import { GatewayError } from '../errors.ts';

export interface ListenerPorts {
  readonly http: number | null;
  readonly https: number | null;
  readonly mqtt: number | null;
  readonly mqtts: number | null;
}

export interface Listeners extends ListenerPorts {
  /** Stops accepting on every listener; open connections are the adapters' to close. */
  stop(): void;
  /** Ends what is left: keep-alive HTTP connections, the private socket. */
  close(): void;
  /**
   * Reads the TLS files again (server certificate and key, client CA, CRLs) and uses them for new connections on the
   * Node TLS listeners (MQTTS; HTTPS/WSS when Node terminates it); open ones keep theirs. HTTPS/WSS terminated by uWS
   * keeps its certificate until a restart. Throws, keeping the old material, when the files are bad.
   */
  reloadTls(): Promise<void>;
}

interface Wiring {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  /** mounts every HTTP/WS route on a uWS app (called once per app: plain, and TLS when uWS terminates it) */
  readonly routes: (app: TemplatedApp) => void;
  /** serves one MQTT connection; `address`: the device's, when a trusted proxy named it */
  readonly mqtt: (stream: Duplex, peer?: PeerCertificate, address?: string) => void;
  readonly tls: TlsMaterial | undefined;
  readonly peers: PeerCertificates | undefined;
}

/**
 * Every listener of DESIGN.md §2. Plain HTTP/WS and MQTT unless FLEETGATE_PLAIN=off. With a server certificate:
 * HTTPS/WSS terminated by uWebSockets.js itself (the fast path), and MQTT over Node `tls`. With a client CA as well
 * (mutual TLS), or with FLEETGATE_TLS_TERMINATOR=node (live reload), HTTPS/WSS is terminated by Node `tls` instead,
 * which can read client certificates and take new ones, and handed to the same uWS app over a private unix socket
 * (tls/terminator.ts): one HTTP/WS implementation either way.
 */
export async function startListeners({ config, logger, routes, mqtt, tls, peers }: Wiring): Promise<Listeners> {
  const { host } = config;
  const stops: (() => void)[] = [];
  const ends: (() => void)[] = [];
  /** what a reload reaches: the Node TLS servers (MQTTS, the HTTPS terminator) */
  const tlsServers: TlsServer[] = [];
  const ports = { http: null as number | null, https: null as number | null, mqtt: null as number | null, mqtts: null as number | null };
  const started = (listener: keyof ListenerPorts, port: number, extra: Record<string, unknown> = {}): void => {
    ports[listener] = port;
    logger.info({ listener, host, port, ...extra }, 'listening');
  };

  // MQTT first: its WebSocket route is on the HTTP listener, and a client that sees HTTP up may try both.
  if (config.plain && config.mqttPort !== null) {
    const trusted = trustedProxies(config.trustedProxies);
    const server = createNetServer((socket) => readProxyHeader(socket, trusted, config.mqttConnectTimeout, (address) => mqtt(socket, undefined, address), (reason) => {
      logger.warn({ listener: 'mqtt', remote: socket.remoteAddress, reason }, 'connection refused');
    }));
    started('mqtt', await listen(server, host, config.mqttPort, 'mqttPort'));
    stops.push(() => server.close());
  }
  if (tls !== undefined && config.mqttsPort !== null) {
    const server = createTlsServer(tls, logger, mqtt);
    tlsServers.push(server);
    started('mqtts', await listen(server, host, config.mqttsPort, 'mqttsPort'), { clientCertificates: clientAuth(tls) });
    stops.push(() => server.close());
  }

  const app = uWS.App();
  routes(app);
  ends.push(() => closeApp(app));
  if (config.plain && config.httpPort !== null) {
    const socket = await listenUws(app, host, config.httpPort, 'httpPort');
    started('http', uWS.us_socket_local_port(socket), { routes: 'HTTP publish, WebSocket, MQTT over WebSocket, REST API, /health, /metrics' });
    stops.push(() => uWS.us_listen_socket_close(socket));
  }
  if (tls !== undefined && config.httpsPort !== null) {
    if (peers !== undefined) {
      const target = privateSocketPath();
      const socket = await new Promise<us_listen_socket>((resolve, reject) => {
        app.listen_unix((token) => (token ? resolve(token) : reject(new Error(`cannot listen on ${target.path}`))), target.path);
      });
      const terminator = createTlsServer(tls, logger, relayTo(target.path, peers));
      started('https', await listen(terminator, host, config.httpsPort, 'httpsPort'), { clientCertificates: clientAuth(tls) });
      tlsServers.push(terminator);
      stops.push(() => terminator.close());
      ends.push(() => {
        uWS.us_listen_socket_close(socket);
        target.remove();
      });
    } else {
      // uWS reads its certificate files once, when the app is made, and cannot take new ones. Nor can a new SSLApp
      // take over the port: this build sets no SO_REUSEADDR, so the port stays taken for as long as a connection the
      // server closed sits in TIME_WAIT (up to 60 s). Live reload is FLEETGATE_TLS_TERMINATOR=node.
      const secure = uWS.SSLApp({ cert_file_name: config.tlsCert, key_file_name: config.tlsKey });
      routes(secure);
      const socket = await listenUws(secure, host, config.httpsPort, 'httpsPort');
      started('https', uWS.us_socket_local_port(socket), { clientCertificates: 'off' });
      stops.push(() => uWS.us_listen_socket_close(socket));
      ends.push(() => closeApp(secure));
    }
  }
  return {
    ...ports,
    stop: () => stops.forEach((stop) => stop()),
    close: () => ends.forEach((end) => end()),
    async reloadTls() {
      if (tls === undefined) return;
      const next = readTlsMaterial(config);
      for (const server of tlsServers) server.setSecureContext(next.options);
      if (peers === undefined && config.httpsPort !== null) logger.warn('HTTPS/WSS (terminated by uWS) keeps its certificate until a restart; FLEETGATE_TLS_TERMINATOR=node reloads it too');
      logger.info({ cert: config.tlsCert, clientCa: config.tlsClientCa || undefined, crl: config.tlsClientCrl }, 'TLS material reloaded');
    },
  };
}

/** Ends keep-alive HTTP and any socket still open; present in this build though missing from its typings. */
function closeApp(app: TemplatedApp): void {
  (app as TemplatedApp & { close(): void }).close();
}

function clientAuth(tls: TlsMaterial): string {
  return tls.required ? 'required' : tls.mutual ? 'optional' : 'off';
}

type PortSetting = 'httpPort' | 'httpsPort' | 'mqttPort' | 'mqttsPort';

/** A port that cannot be had, as a config error naming its setting: one line at start, exit 2 (main.ts). */
function portError(setting: PortSetting, host: string, port: number, err: NodeJS.ErrnoException): GatewayError {
  const reason = err.code === 'EADDRINUSE' ? 'is already in use'
    : err.code === 'EACCES' ? 'needs privileges (ports below 1024 do)'
      : err.code === 'EADDRNOTAVAIL' ? 'cannot be bound: FLEETGATE_HOST is not an address of this machine'
        : `cannot be bound (${err.code ?? err.message})`;
  return new GatewayError('FG_ERR_CONFIG_INVALID', `${kSettings[setting].env}: port ${port} on ${host} ${reason}`);
}

function listen(server: Server, host: string, port: number, setting: PortSetting): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(portError(setting, host, port, err)));
    server.listen(port, host, () => resolve((server.address() as { port: number }).port));
  });
}

/**
 * uWS listens with SO_REUSEPORT: a second gateway on a taken port would start and split the traffic with the first.
 * So the port is first bound, and let go, by a Node socket, which does not share (no SO_REUSEPORT) and so fails
 * with EADDRINUSE when anyone holds it. Two gateways started in the same instant can still both pass this check: the
 * port is free between the probe's close and uWS's bind (one turn of the event loop). Holding the probe open instead
 * would make uWS's own bind fail, so that window stays, documented in docs/CLI.md. Port 0 (any free port) needs no
 * probe.
 */
async function listenUws(app: TemplatedApp, host: string, port: number, setting: PortSetting): Promise<us_listen_socket> {
  if (port !== 0) {
    const probe = createNetServer();
    await listen(probe, host, port, setting);
    await new Promise((resolve) => probe.close(resolve));
  }
  return new Promise((resolve, reject) => {
    app.listen(host, port, (token) => (token ? resolve(token) : reject(new GatewayError('FG_ERR_CONFIG_INVALID', `${kSettings[setting].env}: cannot listen on ${host}:${port}`))));
  });
}
