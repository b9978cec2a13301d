import { describe, expect, it } from 'vitest';
import { filterSubjects, shareQueue } from '../../../src/bus/shared.ts';
import { parseShare } from '../../../src/ingress/mqtt/shared.ts';

describe('bus/shared', () => {
  it.each([
    [null, ['m.*.c.C']],
    ['a/b', ['m.*.c.C.a.b']],
    ['a/+/b', ['m.*.c.C.a.*.b']],
    ['#', ['m.*.c.C', 'm.*.c.C.>']],
    ['a/+/#', ['m.*.c.C.a.*', 'm.*.c.C.a.*.>']],
    ['v1.2/50%/+', ['m.*.c.C.v1%2E2.50%25.*']],
  ])('the MQTT filter subtopic %s of a channel is carried by the NATS subjects %j', (subtopic, subjects) => {
    expect(filterSubjects('C', subtopic)).toEqual(subjects);
  });

  it('names one NATS queue group per share, the same on every instance, a single token whatever the share name', () => {
    const queue = shareQueue('my group. with > odd * chars/m/D/c/C/#');
    expect(queue).toMatch(/^fleetgate-share-[0-9a-f]{32}$/);
    expect(shareQueue('my group. with > odd * chars/m/D/c/C/#')).toBe(queue);
    expect(shareQueue('g/m/D/c/C/#')).not.toBe(shareQueue('g/m/D/c/C'));
  });
});

describe('ingress/mqtt/shared parseShare', () => {
  it.each([
    ['g/m/D/c/C', { name: 'g', filter: 'm/D/c/C' }],
    ['a group/m/D/c/C/#', { name: 'a group', filter: 'm/D/c/C/#' }],
    ['g//x', { name: 'g', filter: '/x' }],
  ])('reads %s as %j', (rest, share) => {
    expect(parseShare(rest)).toEqual(share);
  });

  it.each(['', 'g', 'g/', '/m/D/c/C', 'a+b/m/D/c/C', 'a#/m/D/c/C', '+/m/D/c/C'])('refuses %j [MQTT-4.8.2-1/2]', (rest) => {
    expect(parseShare(rest)).toBeUndefined();
  });
});
