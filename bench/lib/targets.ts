import type { ScenarioResult } from './results.ts';

/**
 * Issue 7's targets (2-core machine), as far as one results entry can show them. Matched by scenario name: a scenario
 * registered under a name these patterns do not match simply shows no target. The cold JWT path's "≥ 1.5× one core's
 * inline ES256 rate" has no reference in the HTTP scenario (its reference is the bare uWS handler): `npm run bench:micro`
 * measures it; only its event-loop bound is checked here.
 */
export interface Target {
  readonly test: RegExp;
  /** fleetgate / reference at least this */
  readonly minRatio?: number;
  /** fleetgate's median at most this, in the scenario's unit (idle memory per connection) */
  readonly maxValue?: number;
  /** fleetgate's event-loop delay p99 (median of the rounds) below this, ms */
  readonly maxEventLoopP99?: number;
  readonly text: string;
}

export const kTargets: readonly Target[] = [
  { test: /^http-publish-(senml|jwt-cached)$/, minRatio: 0.7, text: '≥ 0.7× bare uWS' },
  { test: /^http-publish-jwt-cold/, maxEventLoopP99: 5, text: 'event-loop p99 < 5 ms' },
  { test: /^ws-fanout/, minRatio: 0.8, text: '≥ 0.8× bare uWS publish loop' },
  { test: /^mqtt-fanout-.*qos0$/, minRatio: 1.0, text: '≥ 1.0× mosquitto' },
  // issue 14
  { test: /^cluster-fanout$/, minRatio: 0.8, text: '≥ 0.8× the same instance on the local bus' },
  { test: /^idle-.*ws/, maxValue: 10, text: '≤ 10 KiB per WS connection' },
  { test: /^idle-.*mqtt/, maxValue: 25, text: '≤ 25 KiB per MQTT connection' },
];

export const targetOf = (name: string) => kTargets.find((t) => t.test.test(name));

/** Whether the result meets its target: undefined when there is none (or it cannot be told from this entry). */
export function meetsTarget(t: Target, r: ScenarioResult): boolean | undefined {
  const checks: boolean[] = [];
  if (t.minRatio !== undefined) checks.push(r.ratio >= t.minRatio);
  if (t.maxValue !== undefined) checks.push(r.fleetgate.median <= t.maxValue);
  if (t.maxEventLoopP99 !== undefined && r.eventLoopP99) checks.push(r.eventLoopP99.median < t.maxEventLoopP99);
  return checks.length === 0 ? undefined : checks.every(Boolean);
}
