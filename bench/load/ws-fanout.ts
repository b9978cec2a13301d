import { parseArgs } from 'node:util';
import { coresUsed, messageCounter, wsClientFrames, wsOpen } from './wire.ts';

/**
 * WebSocket fan-out load, run as its own process by bench/scenarios/ws-fanout.ts: N subscribers on one path, and one
 * publisher on the same path sending `size`-byte frames. Closed loop: at most `window` messages are on their way, a
 * message counting as done once every subscriber has it (each subscriber receives in order, so its k-th frame is
 * message k). So a server that is slower gets fewer messages instead of a growing backlog, and neither fleetgate's
 * slow-consumer limit nor uWS's backpressure drop ever fires: a subscriber missing a message stalls the loop, which
 * is reported as an error. Prints {"measuring":true} when the measured seconds begin, then
 * {delivered, seconds, rate, cpu} (cpu: this process, in cores).
 */
const { values: a } = parseArgs({
  options: {
    port: { type: 'string' }, path: { type: 'string' }, subscribers: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '5' }, size: { type: 'string', default: '100' }, window: { type: 'string', default: '64' },
  },
});
const port = Number(a.port);
const n = Number(a.subscribers);
const window = Number(a.window);

/** How many subscribers have each of the last `window` messages, by message number modulo window. */
const have = new Uint32Array(window);
let sent = 0;
let done = 0;
let delivered = 0;

async function subscriber(): Promise<void> {
  const { socket, rest } = await wsOpen(port, a.path!);
  const count = messageCounter('ws');
  let received = 0;
  const onData = (chunk: Buffer) => {
    const m = count(chunk);
    delivered += m;
    for (let i = 0; i < m; i++) {
      const slot = received++ % window;
      if (++have[slot] === n) {
        have[slot] = 0;
        done++;
      }
    }
    if (m > 0) refill();
  };
  if (rest.length > 0) onData(rest);
  socket.on('data', onData).on('close', () => fail('a subscriber was closed'));
}

function fail(why: string): never {
  process.stderr.write(`ws-fanout generator: ${why}\n`);
  process.exit(1);
}

// Subscribers first, 200 handshakes at a time, so that every one of them sees every message.
for (let i = 0; i < n; i += 200) await Promise.all(Array.from({ length: Math.min(200, n - i) }, subscriber));
// The publisher is on the same path: on fleetgate it subscribes too and gets its own messages back, as on the reference.
const publisher = await wsOpen(port, a.path!);
publisher.socket.on('data', () => {}).on('close', () => fail('the publisher was closed'));
const frames = wsClientFrames(Number(a.size), window);
const frameLength = frames.length / window;

// Half a window at a time, in one write: refilling message by message made the server write, and the subscribers
// read, a frame or two at a time, and the rate flipped between runs by 6× as that pattern came and went.
let scheduled = false;
function refill(): void {
  if (scheduled) return;
  scheduled = true;
  setImmediate(() => {
    scheduled = false;
    const room = window - (sent - done);
    if (room < window / 2) return;
    publisher.socket.write(frames.subarray(0, room * frameLength));
    sent += room;
  });
}

let lastDone = -1;
const stall = setInterval(() => {
  if (done === lastDone) fail(`no message reached all ${n} subscribers for 2 s (sent ${sent}, done ${done})`);
  lastDone = done;
}, 2000);

refill();
await new Promise((r) => setTimeout(r, 1000)); // warm-up, not counted
// Tells the scenario to read the server's CPU time now.
process.stdout.write('{"measuring":true}\n');
const cpu0 = process.cpuUsage();
const d0 = delivered;
const started = performance.now();
await new Promise((r) => setTimeout(r, Number(a.seconds) * 1000));
const seconds = (performance.now() - started) / 1000;
const count = delivered - d0;
const cpu = coresUsed(cpu0, seconds);
clearInterval(stall);
process.stdout.write(JSON.stringify({ delivered: count, seconds, rate: count / seconds, cpu }) + '\n');
process.exit(0);
