// Preloaded into the gateway by the idle scenarios only (NODE_OPTIONS=--import): SIGUSR2 runs a full garbage
// collection, so that memory per connection can be read without the handshakes' garbage that V8 has not yet
// collected. A plain .mjs file: the gateway runs dist/main.js under plain node, without tsx.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
process.on('SIGUSR2', () => gc());
