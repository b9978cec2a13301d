import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { abRun, type AbResult, type LoadOptions, type Target } from '../lib/ab.ts';
import { makePki, type ClientCertificate, type Pki } from '../lib/pki.ts';
import { startFleetgate, type Fleetgate } from '../lib/servers.ts';
import { fmt, summarize, type Summary } from '../lib/stats.ts';
import { kSenmlBody } from './http-publish.ts';

/**
 * Two TLS gateways on one PKI: `serverOnly` (a server certificate: HTTPS terminated by uWS SSLApp, the fast path) and,
 * when asked, `mutual` (a client CA in optional mode: Node `tls` terminates HTTPS and relays each connection to the
 * same uWS app over a unix socket, src/tls/terminator.ts), with a client certificate whose CN is its demo secret.
 */
export interface TlsGateways {
  readonly pki: Pki;
  readonly serverOnly: Fleetgate;
  readonly mutual: Fleetgate | undefined;
  readonly client: ClientCertificate | undefined;
  stop(): Promise<void>;
}

export async function startTlsGateways(mutual: boolean): Promise<TlsGateways> {
  const pki = makePki();
  const serverOnly = await startFleetgate(pki.env(false));
  let m: Fleetgate | undefined;
  let client: ClientCertificate | undefined;
  try {
    m = mutual ? await startFleetgate(pki.env(true)) : undefined;
    // The secret exists only once `provision demo` made the client; the gateway reads the CA, not the client's file.
    client = m && pki.clientCert(m.secret, 'bench-device');
  } catch (err) {
    await Promise.all([serverOnly.stop(), m?.stop()]);
    pki.remove();
    throw err;
  }
  return {
    pki, serverOnly, mutual: m, client,
    stop: async () => {
      await Promise.all([serverOnly.stop(), m?.stop()]);
      pki.remove();
    },
  };
}

// Raw channels throughout: no payload work, so the transport's share of each request is as large as it gets (the
// relative cost measured is an upper bound for a senml+json channel).
const https = (g: Fleetgate) => `https://127.0.0.1:${g.httpsPort}/http/${g.rawTopic}`;
const auth = (g: Fleetgate) => ({ authorization: `Client ${g.secret}` });

/** The cost of TLS on the fast path: one gateway, HTTPS (uWS SSLApp) vs its own plain HTTP, same secret header. */
export function httpsPublish(t: TlsGateways, o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const g = t.serverOnly;
  return abRun('https-publish', [
    { name: 'reference', label: 'http', url: `http://127.0.0.1:${g.port}/http/${g.rawTopic}`, headers: auth(g), body: kSenmlBody, cpuSeconds: g.cpuSeconds },
    { name: 'fleetgate', label: 'https', url: https(g), tls: { ca: t.pki.ca }, headers: auth(g), body: kSenmlBody, eventLoopP99: g.eventLoopP99, cpuSeconds: g.cpuSeconds },
  ], o, progress);
}

/**
 * The cost of the mutual-TLS design per request, against server-only HTTPS with a secret header (uWS SSLApp).
 * `header`: the same request on the mutual gateway without a certificate: the only difference is the Node TLS
 * terminator and its unix-socket relay, so this isolates the relay. `cert`: a client certificate and no header, what a
 * certificate device does; keep-alive amortises the certificate's verification, so the gap to `header` is the
 * per-request look-up of the connection's certificate (PeerCertificates.of). Server CPU per request is the steadier
 * measure: req/s also carries autocannon's own TLS work on the same two cores.
 */
export function mtlsPublish(variant: 'cert' | 'header', t: TlsGateways, o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const m = t.mutual!;
  const mutual: Target = variant === 'cert'
    ? { name: 'fleetgate', label: 'mtls+cert', url: https(m), tls: { ca: t.pki.ca, cert: t.client!.cert, key: t.client!.key }, headers: {}, body: kSenmlBody, eventLoopP99: m.eventLoopP99, cpuSeconds: m.cpuSeconds }
    : { name: 'fleetgate', label: 'mtls+hdr', url: https(m), tls: { ca: t.pki.ca }, headers: auth(m), body: kSenmlBody, eventLoopP99: m.eventLoopP99, cpuSeconds: m.cpuSeconds };
  return abRun(`mtls-publish-${variant}`, [
    { name: 'reference', label: 'uws-tls', url: https(t.serverOnly), tls: { ca: t.pki.ca }, headers: auth(t.serverOnly), body: kSenmlBody, cpuSeconds: t.serverOnly.cpuSeconds },
    mutual,
  ], o, progress);
}

interface HandshakeResult {
  readonly rate: number;
  readonly ok: number;
  readonly failed: number;
  readonly firstError: string;
  readonly protocol: string;
  readonly cipher: string;
  readonly cpu: number;
}

function generate(args: Record<string, string | number | undefined>): Promise<HandshakeResult> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, '../load/tls-handshakes.ts'),
    ...Object.entries(args).flatMap(([k, v]) => (v === undefined ? [] : [`--${k}`, String(v)]))], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as HandshakeResult) : reject(new Error(`handshake generator exited ${code}`)))));
}

export type HandshakesResult = AbResult & { noCert: Summary; gatewayCpuPerHandshakeUs: Record<string, number>; generatorCpu: Record<string, number>; protocol: string; note: string };

/**
 * New TLS connections per second, each a full handshake and one publish (Connection: close), from a generator
 * process: the uWS SSLApp listener (secret header) vs the Node `tls` mutual listener with a client certificate
 * (`fleetgate`), and that listener without a certificate (secret header), which splits the gap into "Node TLS +
 * relay" and "the client certificate (its verification, and reading it for the CN)". Also the gateway's CPU time per handshake, read from /proc: with the
 * generator sharing the cores, the rate may be the generator's limit, the CPU per handshake is the server's own cost.
 */
export async function tlsHandshakes(t: TlsGateways, o: LoadOptions, progress: (line: string) => void): Promise<HandshakesResult> {
  const m = t.mutual!;
  const common = { seconds: o.duration, concurrency: o.connections, ca: t.pki.caFile, body: kSenmlBody };
  const targets = [
    { name: 'reference', label: 'uws-tls', gateway: t.serverOnly, args: { ...common, port: t.serverOnly.httpsPort, path: `/http/${t.serverOnly.rawTopic}`, secret: t.serverOnly.secret } },
    { name: 'noCert', label: 'mtls+hdr', gateway: m, args: { ...common, port: m.httpsPort, path: `/http/${m.rawTopic}`, secret: m.secret } },
    { name: 'fleetgate', label: 'mtls+cert', gateway: m, args: { ...common, port: m.httpsPort, path: `/http/${m.rawTopic}`, cert: t.client!.certFile, key: t.client!.keyFile } },
  ] as const;
  const rates: Record<string, number[]> = { reference: [], noCert: [], fleetgate: [] };
  const cpuUs: Record<string, number[]> = { reference: [], noCert: [], fleetgate: [] };
  const generatorCpu: Record<string, number[]> = { reference: [], noCert: [], fleetgate: [] };
  let errors = 0;
  let protocol = '';
  for (const target of targets) await generate({ ...target.args, seconds: 1 });
  for (let round = 1; round <= o.rounds; round++) {
    for (const target of targets) {
      const before = target.gateway.cpuSeconds();
      const r = await generate(target.args);
      const perHandshake = ((target.gateway.cpuSeconds() - before) / Math.max(r.ok, 1)) * 1e6;
      rates[target.name]!.push(r.rate);
      cpuUs[target.name]!.push(perHandshake);
      generatorCpu[target.name]!.push(r.cpu);
      errors += r.failed;
      protocol = `${r.protocol} ${r.cipher}`;
      progress(`tls-handshakes round ${round}/${o.rounds} ${target.label.padEnd(9)} ${fmt(r.rate)} handshakes/s, gateway ${perHandshake.toFixed(0)} µs CPU each, generator ${(r.cpu * 100).toFixed(0)}% CPU${r.failed ? ` (${r.failed} failed: ${r.firstError})` : ''}`);
    }
  }
  const median = (v: number[]) => summarize(v).median;
  const fleetgate = summarize(rates.fleetgate!);
  const reference = summarize(rates.reference!);
  const noCert = summarize(rates.noCert!);
  const gatewayCpuPerHandshakeUs = { reference: median(cpuUs.reference!), noCert: median(cpuUs.noCert!), fleetgate: median(cpuUs.fleetgate!) };
  const note = `${protocol}; without cert ${fmt(noCert.median)}/s; gateway CPU per handshake µs: uws ${gatewayCpuPerHandshakeUs.reference.toFixed(0)}, mtls no cert ${gatewayCpuPerHandshakeUs.noCert.toFixed(0)}, mtls cert ${gatewayCpuPerHandshakeUs.fleetgate.toFixed(0)}`;
  return {
    fleetgate, reference, ratio: fleetgate.median / reference.median, errors, eventLoopP99: undefined, noCert, gatewayCpuPerHandshakeUs,
    generatorCpu: { reference: median(generatorCpu.reference!), noCert: median(generatorCpu.noCert!), fleetgate: median(generatorCpu.fleetgate!) }, protocol, note,
  };
}
