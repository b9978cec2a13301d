/**
 * The documentation runs as pasted. Every ```sh block of README.md and docs/*.md that follows a `<!-- test: run -->`
 * line runs, in order (README.md first, then docs/*.md by name), in one bash session started at the repository root,
 * as a reader pastes them into one terminal: the real `npm start` (dist/main.js, built by `npm test`), curl,
 * mosquitto_pub/mosquitto_sub and npx fleetgate. What differs from a reader's terminal, and nothing else:
 * - the default ports 8080, 1883, 8443 and 8883 written in the blocks become free ports, and FLEETGATE_HTTP_PORT,
 *   FLEETGATE_MQTT_PORT, FLEETGATE_HTTPS_PORT and FLEETGATE_MQTTS_PORT say the same to the gateway;
 * - FLEETGATE_HOST=127.0.0.1 (loopback only) and FLEETGATE_STORE is a file in a temp dir, not ./data;
 * - `npm ci` is skipped (npm test has installed and built everything).
 * Each block then has to show what a reader would look for (kExpected); a new marked block needs its entry there.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../helpers/gateway.ts';

const kRoot = join(import.meta.dirname, '../..');
const kMarker = '<!-- test: run -->';

interface Block { name: string; code: string }

/** What a reader looks at after a block: patterns in the block's own output, and in anything printed after it (background subscribers). */
interface Expected { own: RegExp[]; later?: RegExp[] }

const kExpected: Record<string, Expected> = {
  'README.md#1': { own: [/\(npm ci skipped\)/, /\{"status":"ok"/] },
  'README.md#2': { own: [/"connected": 2/] },
  'README.md#3': {
    own: [/^HTTP\/1\.1 202 Accepted/m],
    later: [/^\[\{"n":"sensor-1:temp","u":"Cel","v":21\.5,"t":\d/m, /^\[\{"n":"sensor-1:temp","u":"Cel","v":21\.7,"t":\d/m],
  },
  'README.md#4': { own: [/^\[\{"n":"sensor-1:temp","v":22,"t":\d/m] },
  'README.md#5': { own: [/\{"code":"FG_ERR_SENML_INVALID","message":"record 1: name \\"bad name\\"[^\n]*"rule":"name-char"\}/] },
  'docs/AUTH.md#1': {
    own: [/"email":"ana@example.com"/, /^\{"sessions":\[\{"token_id":"[^"]+","created_at":/m, /^\{"access_token":"/m, /^204$/m, /^\{"keys":\[/m],
  },
  'docs/MQTT.md#1': { own: [], later: [/^m\/[0-9a-f-]+\/c\/[0-9a-f-]+\/kitchen \[\{"n":"dev:temp"/m, /^m\/[0-9a-f-]+\/c\/[0-9a-f-]+ \[\{"n":"dev:hum"/m] },
  'docs/PROVISIONING.md#1': { own: [/^\{"connected":2\}$/m, /"total":1,"offset":0,"limit":10,"clients":\[\{/, /^HTTP\/1\.1 202 Accepted/m] },
  'docs/PROVISIONING.md#2': { own: [/"route": "plant-2"/, /"name": "sensor-18"/, /"payload_format": "senml\+cbor"/, /\(shown once\)/] },
};
/** Printed by bash or a client when a pasted command is wrong. */
const kBroken = /command not found|Unknown option|Problem setting|Error: |Connection Refused|SyntaxError|Usage:/;

function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(kRoot, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  lines.forEach((line, i) => {
    if (line.trim() !== kMarker) return;
    expect(lines[i + 1], `${file}:${i + 2}: a shell fence after ${kMarker}`).toMatch(/^```(sh|bash)$/);
    const end = lines.indexOf('```', i + 2);
    blocks.push({ name: `${file}#${blocks.length + 1}`, code: lines.slice(i + 2, end).join('\n') });
  });
  return blocks;
}

const docs = ['README.md', ...readdirSync(join(kRoot, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
const blocks = docs.flatMap(blocksOf);
let dir: string;
let output = '';

/** The output of a block, or of everything from the block on. */
function outputOf(name: string, later = false): string {
  const start = output.indexOf(`::block ${name}::\n`);
  if (start < 0) return '';
  const next = output.indexOf('::block ', start + 1);
  return output.slice(start, later || next < 0 ? undefined : next);
}

const satisfied = () => output.includes('::end::\n') && Object.entries(kExpected).every(([name, e]) =>
  e.own.every((p) => p.test(outputOf(name))) && (e.later ?? []).every((p) => p.test(outputOf(name, true))));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fleetgate-readme-'));
  const ports: Record<string, number> = { 8080: await freePort(), 1883: await freePort(), 8443: await freePort(), 8883: await freePort() };
  const env = {
    ...process.env, FLEETGATE_HOST: '127.0.0.1', FLEETGATE_STORE: `sqlite:${join(dir, 'fleetgate.db')}`,
    FLEETGATE_HTTP_PORT: String(ports[8080]), FLEETGATE_MQTT_PORT: String(ports[1883]),
    FLEETGATE_HTTPS_PORT: String(ports[8443]), FLEETGATE_MQTTS_PORT: String(ports[8883]),
  };
  const script = [
    'npm() { if [ "$1" = ci ]; then echo "(npm ci skipped)"; else command npm "$@"; fi; }',
    ...blocks.map((b) => `echo '::block ${b.name}::'\n${b.code.replace(/\b(8080|1883|8443|8883)\b/g, (p) => String(ports[p]))}`),
    "echo '::end::'",
  ].join('\n');
  // Its own process group, so that the gateway and background subscribers the blocks start are stopped with it.
  const bash = spawn('bash', ['-c', script], { cwd: kRoot, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  bash.stdout.on('data', (d) => (output += d));
  bash.stderr.on('data', (d) => (output += d));
  // Background subscribers print after the script ends: wait for what the blocks promise, up to the hook timeout.
  const deadline = Date.now() + 240_000;
  while (!satisfied() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const closed = new Promise((resolve) => bash.on('close', resolve));
  process.kill(-bash.pid!, 'SIGTERM');
  const killed = setTimeout(() => process.kill(-bash.pid!, 'SIGKILL'), 10_000);
  await closed;
  clearTimeout(killed);
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('README.md and docs/*.md, pasted into bash', () => {
  it('has marked blocks, each with what it should show, and nothing expected of a block that is gone', () => {
    expect(blocks.map((b) => b.name).sort()).toEqual(Object.keys(kExpected).sort());
  });

  it('ran every block to the end', () => {
    expect(output).toContain('::end::');
  });

  it.each(blocks.map((b) => [b.name]))('%s shows what the docs say, and no error', (name) => {
    const expected = kExpected[name]!;
    const own = outputOf(name);
    const printed = own.split('\n').filter((line) => !line.startsWith('{"level":')).join('\n'); // the gateway's own log aside
    expect(printed, output).not.toMatch(kBroken);
    for (const pattern of expected.own) expect(own, output).toMatch(pattern);
    for (const pattern of expected.later ?? []) expect(outputOf(name, true), output).toMatch(pattern);
  });
});
