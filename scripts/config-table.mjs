// Rewrites the README's configuration table from the settings table in src/config.ts (run after `npm run build`).
import { readFileSync, writeFileSync } from 'node:fs';
import { aliasesOf, flagOf, kSettings } from '../dist/config.js';

const readme = new URL('../README.md', import.meta.url);
const rows = Object.entries(kSettings).map(([key, s]) => `| \`${s.env}\` | \`${flagOf(key)}\` | ${s.default === '' ? '(none)' : `\`${s.default}\``} | ${s.doc}${aliasesOf(s).length > 0 ? ` (also ${aliasesOf(s).map((a) => `\`${a}\``).join(', ')})` : ''} |`);
const lines = readFileSync(readme, 'utf8').split('\n');
const first = lines.findIndex((line) => line.startsWith('| `FLEETGATE_'));
let last = first;
while (lines[last + 1]?.startsWith('| `FLEETGATE_')) last++;
lines.splice(first, last - first + 1, ...rows);
writeFileSync(readme, lines.join('\n'));
