import uWS from 'uWebSockets.js';

// The upper bound for WebSocket fan-out and the floor for WebSocket memory: a bare uWS app on any path, every socket
// subscribed to one topic and every frame it receives published to it by uWS's own C++ fan-out (app.publish, which
// includes the sender, as fleetgate does for a client that subscribes). No auth, routing or per-socket state. Limits
// as fleetgate's defaults: 1 MiB backpressure, 120 s idle timeout with automatic pings.
const kTopic = 'fanout';
const app = uWS.App();
app.ws('/*', {
  maxPayloadLength: 1024 * 1024,
  maxBackpressure: 1024 * 1024,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  open: (ws) => void ws.subscribe(kTopic),
  message: (_ws, data, isBinary) => void app.publish(kTopic, data, isBinary),
});
app.listen('127.0.0.1', 0, (token) => {
  if (!token) process.exit(1);
  process.stdout.write(`listening ${uWS.us_socket_local_port(token)}\n`);
});
process.on('SIGTERM', () => process.exit(0));
