import { readFileSync } from 'node:fs';

/** fleetgate's version, from package.json (dist/ and src/ both sit one level below it). */
export const kVersion: string = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version;
