import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const kRoot = join(import.meta.dirname, '../..');
const kMain = join(kRoot, 'dist/main.js');

export interface Server {
  readonly port: number;
  /** its process: CPU time and resident memory are read from /proc (cpuSeconds, residentKiB) */
  readonly pid: number;
  stop(): Promise<void>;
}

/** Spawns a server process and waits until `ready` finds its port in its output. */
function start(args: string[], env: NodeJS.ProcessEnv, ready: RegExp): Promise<{ child: ChildProcess; port: number; output: string }> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const match = ready.exec(out);
      if (match) resolve({ child, port: Number(match[1]), output: out });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}`)));
  });
}

function stopper(child: ChildProcess, cleanup = () => {}): () => Promise<void> {
  return () => new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', () => {
      cleanup();
      resolve();
    });
    child.kill('SIGTERM');
  });
}

function cli(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [kMain, ...args], { env: { ...process.env, ...env } });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    p.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`fleetgate ${args.join(' ')} failed`))));
  });
}

/** The reference: a bare uWebSockets.js app that reads the body and answers 202, nothing else. */
export async function startReference(): Promise<Server> {
  const { child, port } = await start(['--import', 'tsx', join(kRoot, 'bench/reference-uws.ts')], {}, /listening (\d+)/);
  return { port, pid: child.pid!, stop: stopper(child) };
}

/** The WebSocket reference (bench/reference-ws.ts): a bare uWS app, every socket subscribed to one topic. */
export async function startReferenceWs(): Promise<Server> {
  const { child, port } = await start(['--import', 'tsx', join(kRoot, 'bench/reference-ws.ts')], {}, /listening (\d+)/);
  return { port, pid: child.pid!, stop: stopper(child) };
}

/** fleetgate as a user runs it (`node dist/main.js serve`), on a fresh store provisioned by `provision demo`. */
export interface Fleetgate extends Server {
  readonly secret: string;
  readonly topic: string;
  readonly rawTopic: string;
  /** the store file: the bench reads the signing key from it to mint tokens */
  readonly store: string;
  readonly mqttPort: number;
  /** the demo client's id: the MQTT username */
  readonly clientId: string;
  readonly admin: { readonly email: string; readonly password: string };
  /** the HTTPS/WSS listener's port, when `extraEnv` gave it a certificate */
  readonly httpsPort: number | undefined;
  /** CPU seconds the gateway process has used so far (all threads), from /proc */
  cpuSeconds(): number;
  /** The gateway's event-loop delay p99 (ms) since the previous call: prom-client resets it on every scrape. */
  eventLoopP99(): Promise<number>;
}

/** `extraEnv`: more settings, e.g. FLEETGATE_TLS_* files for the HTTPS listener. */
export async function startFleetgate(extraEnv: NodeJS.ProcessEnv = {}): Promise<Fleetgate> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-bench-'));
  const admin = { email: 'bench@example.com', password: 'bench password' };
  const env = {
    FLEETGATE_STORE: `sqlite:${join(dir, 'fleetgate.db')}`, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_HTTP_PORT: '0', FLEETGATE_MQTT_PORT: '0', FLEETGATE_LOG_LEVEL: 'info',
    FLEETGATE_ADMIN_EMAIL: admin.email, FLEETGATE_ADMIN_PASSWORD: admin.password, ...extraEnv,
  };
  const demo = await cli(['provision', 'demo'], env);
  const secret = /^secret +(\S+)/m.exec(demo)![1]!;
  const topic = /\/http\/(m\/\S+)/.exec(demo)![1]!;
  // A second channel of format raw, for the same load without SenML work.
  const domain = /^domain +(\S+)/m.exec(demo)![1]!;
  const client = /^client +(\S+)/m.exec(demo)![1]!;
  const raw = JSON.parse(await cli(['provision', 'channel', 'create', '--domain', domain, '--name', 'raw', '--format', 'raw'], env)).id as string;
  await cli(['provision', 'connect', '--domain', domain, '--client', client, '--channel', raw], env);
  // BENCH_CPU_PROF=<dir>: the gateway writes a V8 CPU profile there when it stops (open it in Chrome DevTools).
  const profile = process.env.BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.BENCH_CPU_PROF] : [];
  // HTTPS is the last listener to start: with a certificate, wait for it.
  const tls = Boolean(extraEnv.FLEETGATE_TLS_CERT);
  const { child, port: last, output } = await start([...profile, kMain, 'serve'], env, tls ? /"listener":"https","host":"[^"]*","port":(\d+)/ : /"listener":"http","host":"[^"]*","port":(\d+)/);
  const port = Number(/"listener":"http","host":"[^"]*","port":(\d+)/.exec(output)![1]);
  const mqttPort = Number(/"listener":"mqtt","host":"[^"]*","port":(\d+)/.exec(output)![1]);
  const eventLoopP99 = async () => {
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    return Number(/^fleetgate_event_loop_delay_p99_seconds (\S+)/m.exec(text)?.[1] ?? NaN) * 1000;
  };
  return { port, pid: child.pid!, secret, topic, rawTopic: `m/${domain}/c/${raw}`, store: join(dir, 'fleetgate.db'), mqttPort, clientId: client, admin, httpsPort: tls ? last : undefined, cpuSeconds: () => cpuSeconds(child.pid!), eventLoopP99, stop: stopper(child, () => rmSync(dir, { recursive: true, force: true })) };
}

/** utime + stime of a process, in seconds (USER_HZ ticks: 100 on Linux). */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident memory of a process (VmRSS), KiB. */
export function residentKiB(pid: number): number {
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

/** The soft limit on open files of a process: each connection takes one descriptor in the server. */
export function openFilesLimit(pid: number): number {
  const soft = /^Max open files\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'))![1]!;
  return soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft);
}

/**
 * The reference broker: Debian's mosquitto on a free port, anonymous, loopback only. `persistent`: with `persistence
 * true` and its database in the broker's temp dir (mosquitto writes it every `autosave_interval`, 30 min by default,
 * and when it stops).
 */
export async function startMosquitto(options: { persistent?: boolean } = {}): Promise<Server> {
  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-mosquitto-'));
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const persistence = options.persistent ? `persistence true\npersistence_location ${dir}/\n` : 'persistence false\n';
  writeFileSync(join(dir, 'mosquitto.conf'), `listener ${port} 127.0.0.1\nallow_anonymous true\n${persistence}log_type error\n`);
  if (!existsSync('/usr/sbin/mosquitto')) throw new Error('the MQTT scenarios compare with Debian\'s mosquitto: apt-get install mosquitto');
  const child = spawn('/usr/sbin/mosquitto', ['-c', join(dir, 'mosquitto.conf')], { stdio: 'ignore' });
  for (let i = 0; i < 50; i++) {
    const up = await new Promise<boolean>((resolve) => {
      const probe = connect(port, '127.0.0.1', () => (probe.end(), resolve(true)));
      probe.on('error', () => resolve(false));
    });
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, pid: child.pid!, stop: stopper(child, () => rmSync(dir, { recursive: true, force: true })) };
}
