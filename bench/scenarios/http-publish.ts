import { abRun, type AbResult, type LoadOptions } from '../lib/ab.ts';
import type { Fleetgate, Server } from '../lib/servers.ts';

export const kSenmlBody = '[{"bn":"some-base-name:","bt":1.276020076001e+09,"bu":"A","bver":5,"n":"voltage","u":"V","v":120.1},{"n":"current","t":-5,"v":1.2},{"n":"current","t":-4,"v":1.3}]';

export type Variant = 'senml' | 'raw';

/**
 * HTTP publish with a cached secret (the registry view answers in memory), against a bare uWS handler that reads the
 * body and answers 202. `senml`: a senml+json channel (validation + normalisation + re-encoding); `raw`: a raw channel
 * (no payload work), which isolates the gateway's own cost.
 */
export function httpPublish(variant: Variant, gateway: Fleetgate, reference: Server, o: LoadOptions, progress: (line: string) => void): Promise<AbResult> {
  const senml = variant === 'senml';
  return abRun(`http-publish-${variant}`, [
    { name: 'reference', url: `http://127.0.0.1:${reference.port}/http/x`, headers: { 'content-type': 'application/senml+json' }, body: kSenmlBody },
    {
      name: 'fleetgate',
      url: `http://127.0.0.1:${gateway.port}/http/${senml ? gateway.topic : gateway.rawTopic}`,
      headers: { ...(senml && { 'content-type': 'application/senml+json' }), authorization: `Client ${gateway.secret}` },
      body: kSenmlBody,
      eventLoopP99: gateway.eventLoopP99,
    },
  ], o, progress);
}
