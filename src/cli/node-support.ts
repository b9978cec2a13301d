/**
 * The Node releases fleetgate runs on. Its uWebSockets.js build (DESIGN.md §12) has native binaries for Node 16, 18
 * and 20 only; on another release it falls back to a JS shim that half works (shutdown fails with `app.close is not a
 * function`), and the rest of the stack is tested on 20.12+. So refuse anything else before uWS is loaded.
 */
export const kSupportedNode = { major: 20, minMinor: 12 } as const;

/** Why `version` (as in process.versions.node) cannot run fleetgate, or undefined when it can. */
export function unsupportedNode(version: string): string | undefined {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  const { major: want, minMinor } = kSupportedNode;
  if (major === want && minor >= minMinor) return undefined;
  return `Node ${version} is not supported: fleetgate runs on Node ${want} (>= ${want}.${minMinor}), the release its uWebSockets.js build has a binary for; install Node ${want} (e.g. \`nvm install ${want}\`) and run it again`;
}

// Runs when imported: main.ts imports this module first, so that it runs before anything loads uWS.
const problem = unsupportedNode(process.versions.node);
if (problem !== undefined) {
  process.stderr.write(`fleetgate: ${problem}\n`);
  process.exit(2);
}
