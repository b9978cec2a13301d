import { describe, expect, it } from 'vitest';
import { parseMediaType, parsePath } from '../../../src/pipeline/parse.ts';

describe('pipeline/parse', () => {
  it.each([
    ['/http/m/d1/c/c1', '/http', { domain: 'd1', channel: 'c1', subtopic: null, wildcard: false }],
    ['/m/d1/c/c1', '/http', { domain: 'd1', channel: 'c1', subtopic: null, wildcard: false }],
    ['/m/d1/c/c1/room/1/temp', '/http', { domain: 'd1', channel: 'c1', subtopic: 'room/1/temp', wildcard: false }],
    ['/http/channels/c1/messages', '/http', { domain: null, channel: 'c1', subtopic: null, wildcard: false }],
    ['/channels/c1/messages/a/b', '/http', { domain: null, channel: 'c1', subtopic: 'a/b', wildcard: false }],
    ['/ws/m/d1/c/c1/%23', '/ws', { domain: 'd1', channel: 'c1', subtopic: '#', wildcard: true }],
    ['/ws/m/d1/c/c1/+/temp', '/ws', { domain: 'd1', channel: 'c1', subtopic: '+/temp', wildcard: true }],
    ['/ws/channels/c1/messages', '/ws', { domain: null, channel: 'c1', subtopic: null, wildcard: false }],
    ['/m/my-domain/c/my%2Dchannel', '/http', { domain: 'my-domain', channel: 'my-channel', subtopic: null, wildcard: false }],
  ] as const)('parses %s', (path, prefix, target) => {
    expect(parsePath(path, prefix)).toEqual({ ok: true, value: target });
  });

  it.each([
    ['/http/m/d1/c', 'channel is empty'],
    ['/http/m/d1/x/c1', 'expected m/'],
    ['/http/m//c/c1', 'domain is empty'],
    ['/http/m/d1/c/c1/', 'empty level'],
    ['/http/m/d1/c/c1/a//b', 'empty level'],
    ['/http/m/d1/c/c1/a%20b', 'forbidden character'],
    ['/http/m/d1/c/c1/a*', 'forbidden character'],
    ['/http/m/d1/c/c1/>', 'forbidden character'],
    ['/http/m/d1/c/c1/a%00', 'forbidden character'],
    ['/http/m/d1/c/c1/a%2Fb', 'forbidden character'],
    ['/http/m/d1/c/c1/a+', 'forbidden character'],
    ['/http/m/d1/c/c1/%23', 'only allowed when subscribing'],
    ['/ws/m/d1/c/c1/%23/a', '"#" must be the last'],
    ['/http/m/d1/c/c1/%E0%A4%A', 'percent-encoding'],
    ['/http/channels/c1/oops', 'expected m/'],
  ] as const)('refuses %s (%s)', (path, message) => {
    const prefix = path.startsWith('/ws') ? '/ws' : '/http';
    const result = parsePath(path, prefix);
    expect(result).toMatchObject({ ok: false, code: 'FG_ERR_PARSE_TOPIC' });
    expect(result.ok === false && result.message).toContain(message);
  });

  it.each([
    ['application/senml+json', 'application/senml+json'],
    ['Application/SenML+JSON; charset=utf-8', 'application/senml+json'],
    ['', undefined],
    ['  ', undefined],
  ])('media type %j -> %j', (header, type) => {
    expect(parseMediaType(header)).toBe(type);
  });
});
