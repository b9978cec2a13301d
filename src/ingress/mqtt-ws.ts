import uWS, { type TemplatedApp } from 'uWebSockets.js';
import type { PeerCertificate } from '../auth/certificate.ts';
import { fail } from '../errors.ts';
import type { IngressContext } from './context.ts';
import { remoteAddress } from './remote.ts';
import { writeFailure } from './respond.ts';
import { WsDuplex } from './ws-duplex.ts';

interface Connection {
  duplex: WsDuplex | undefined;
  /** the client certificate it came with (mutual TLS), for the broker to authenticate */
  readonly peer: PeerCertificate | undefined;
  readonly remote: string;
}

/**
 * MQTT over WebSocket at `/mqtt` (subprotocol `mqtt`) on the HTTP listener: each socket becomes a Duplex handed to
 * the broker, so authentication and everything after it is the MQTT adapter's, as over TCP.
 */
export function mountMqttOverWs(app: TemplatedApp, ctx: IngressContext, handle: (stream: WsDuplex, peer: PeerCertificate | undefined) => unknown): void {
  const { config } = ctx;
  const behavior: uWS.WebSocketBehavior<Connection> = {
    // An MQTT packet may carry a payload up to the limit, plus its topic and header.
    maxPayloadLength: config.maxPayload + 64 * 1024,
    maxBackpressure: config.wsMaxBackpressure + 4 * config.maxPayload,
    closeOnBackpressureLimit: 0,
    // MQTT has its own keepalive; the broker closes silent clients.
    idleTimeout: 0,
    upgrade(res, req, context) {
      const key = req.getHeader('sec-websocket-key');
      const protocols = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      if (ctx.closing()) return writeFailure(res, fail('FG_ERR_SHUTTING_DOWN'));
      // MQTT over WebSocket: the client offers "mqtt" (or the older "mqttv3.1"); echo what it offered.
      const offered = protocols.split(',').map((p) => p.trim());
      const protocol = offered.find((p) => p === 'mqtt' || p === 'mqttv3.1');
      if (protocol === undefined) return writeFailure(res, fail('FG_ERR_REQUEST_INVALID', 'subprotocol "mqtt" required'));
      res.upgrade<Connection>({ duplex: undefined, peer: ctx.peers?.of(res), remote: remoteAddress(res, ctx.peers) }, key, protocol, extensions, context);
    },
    open(ws) {
      const connection = ws.getUserData();
      connection.duplex = new WsDuplex(ws as uWS.WebSocket<unknown>, config.wsMaxBackpressure, connection.remote);
      handle(connection.duplex, connection.peer);
    },
    message(ws, data) {
      ws.getUserData().duplex?.receive(data);
    },
    drain(ws) {
      ws.getUserData().duplex?.drained();
    },
    close(ws) {
      ws.getUserData().duplex?.peerClosed();
    },
  };
  app.ws('/mqtt', behavior);
}
