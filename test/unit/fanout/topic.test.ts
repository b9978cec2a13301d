import { describe, expect, it } from 'vitest';
import { matchesFilter, splitSubtopic } from '../../../src/fanout/topic.ts';

describe('fanout/topic', () => {
  it.each([
    [null, null, true],
    [null, 'a', false],
    ['#', null, true],
    ['#', 'a/b/c', true],
    ['a/#', 'a', true],
    ['a/#', 'a/b', true],
    ['a/#', 'b', false],
    ['+', 'a', true],
    ['+', null, false],
    ['+', 'a/b', false],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/b', 'a/b', true],
    ['a/b', 'a', false],
  ] as const)('filter %j vs subtopic %j -> %j', (filter, subtopic, expected) => {
    expect(matchesFilter(splitSubtopic(filter), splitSubtopic(subtopic))).toBe(expected);
  });
});
