// The Docker HEALTHCHECK: GET /health on the listener this gateway's FLEETGATE_* settings start, over loopback.
// Plain HTTP when it listens; otherwise HTTPS (FLEETGATE_PLAIN=off, or FLEETGATE_HTTP_PORT=off with TLS).
// Exit 0: healthy; 1: not (the reason on stderr, which `docker inspect` shows).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { loadConfig } from '../dist/config.js';

const kTimeoutMs = 2000;

const fail = (why) => {
  process.stderr.write(`healthcheck: ${why}\n`);
  process.exit(1);
};

let config;
try {
  config = loadConfig({}, process.env);
} catch (err) {
  fail(err.message);
}
// A wildcard bind answers on loopback; a specific address only there.
const host = { '0.0.0.0': '127.0.0.1', '::': '::1' }[config.host] ?? config.host;
const tls = config.tlsCert !== '' && config.httpsPort !== null;
const [request, port] = config.plain && config.httpPort !== null ? [httpRequest, config.httpPort] : tls ? [httpsRequest, config.httpsPort] : [];
if (request === undefined) fail('no HTTP or HTTPS listener is configured: nothing to ask for /health');

// Loopback to our own listener, nothing secret sent: the server certificate (issued for a public name) is not checked.
const req = request({ host, port, path: '/health', rejectUnauthorized: false, timeout: kTimeoutMs }, (res) => {
  res.resume();
  if (res.statusCode === 200) process.exit(0);
  fail(`GET /health answered ${res.statusCode}`);
});
req.on('timeout', () => req.destroy(new Error(`no answer within ${kTimeoutMs} ms`)));
req.on('error', (err) => {
  // FLEETGATE_TLS_CLIENT_AUTH=required: without a client certificate the server ends the TLS 1.3 handshake with
  // "certificate required". That answer comes from the running listener: it is alive, /health is just out of reach.
  if (err.code === 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED') process.exit(0);
  fail(`GET ${request === httpRequest ? 'http' : 'https'}://${host}:${port}/health: ${err.message}`);
});
req.end();
