import { readFileSync } from 'node:fs';
import { connect, createSecureContext, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';

/**
 * New TLS connections per second: `concurrency` loops, each opening a connection (full handshake: no session is ever
 * offered for resumption), sending one HTTP publish with `Connection: close`, and counting it once a 2xx status line
 * arrives. Prints one JSON line: { rate, ok, failed, protocol, cipher, cpu } (cpu: this process's CPU seconds per
 * second, to see whether the generator, not the server, was the limit).
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string' }, path: { type: 'string' }, seconds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '50' },
    ca: { type: 'string' }, cert: { type: 'string' }, key: { type: 'string' }, secret: { type: 'string' }, body: { type: 'string', default: '{}' },
  },
});
const port = Number(values.port);
// One context for all connections: made per connection, parsing CA, certificate and key cost the generator more than
// the handshake itself.
const secureContext = createSecureContext({ ca: readFileSync(values.ca!), ...(values.cert && { cert: readFileSync(values.cert), key: readFileSync(values.key!) }) });
const body = Buffer.from(values.body!);
const request = Buffer.from(`POST ${values.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: ${body.length}\r\n`
  + (values.secret ? `Authorization: Client ${values.secret}\r\n` : '') + '\r\n' + body.toString());

let ok = 0;
let failed = 0;
let protocol = '';
let cipher = '';
let firstError = '';
const end = Date.now() + Number(values.seconds) * 1000;

function once(): Promise<void> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (success: boolean, why?: string) => {
      if (done) return;
      done = true;
      if (success) ok++;
      else {
        failed++;
        firstError ||= why ?? 'closed before a status line';
      }
      socket.destroy();
      resolve();
    };
    // Verifies the server like a real device would; servername localhost: the certificate's CN and SAN.
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext }, () => {
      protocol = socket.getProtocol() ?? '';
      cipher = socket.getCipher().name;
      socket.write(request);
    });
    let head = '';
    socket.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      const eol = head.indexOf('\r\n');
      if (eol >= 0) finish(/^HTTP\/1\.1 2\d\d/.test(head), head.slice(0, eol));
    });
    socket.on('error', (err) => finish(false, err.message));
    socket.on('close', () => finish(false));
  });
}

async function loop(): Promise<void> {
  while (Date.now() < end) await once();
}

const cpu0 = process.cpuUsage();
const t0 = performance.now();
await Promise.all(Array.from({ length: Number(values.concurrency) }, loop));
const seconds = (performance.now() - t0) / 1000;
const cpu = process.cpuUsage(cpu0);
process.stdout.write(JSON.stringify({ rate: ok / seconds, ok, failed, firstError, protocol, cipher, cpu: (cpu.user + cpu.system) / 1e6 / seconds }) + '\n');
