import { fail, ok, type Result } from '../errors.ts';
import type { PayloadFormat } from '../registry/types.ts';
import { decodeSenmlCbor, encodeSenmlCbor, encodeSenmlJson } from '../senml/codec.ts';
import { resolveSenml } from '../senml/resolve.ts';
import { validateSenml } from '../senml/validate.ts';

const kMediaTypes: Readonly<Record<PayloadFormat, string | undefined>> = {
  'senml+json': 'application/senml+json',
  'senml+cbor': 'application/senml+cbor',
  json: 'application/json',
  raw: undefined,
};

/**
 * Stage 4, validate: the payload against the channel's format (DESIGN.md §6). Returns the bytes that fan out:
 * SenML is resolved (RFC 8428 §4.6) and re-encoded once; json and raw pass through untouched.
 * `mediaType` undefined means the transport has none (WebSocket) or the client sent none: the channel's format holds.
 */
export function validate(format: PayloadFormat, mediaType: string | undefined, payload: Uint8Array, nowSeconds: number): Result<Uint8Array> {
  const expected = kMediaTypes[format];
  if (mediaType !== undefined && expected !== undefined && mediaType !== expected) {
    return fail('FG_ERR_PARSE_MEDIA_TYPE', `this channel takes ${expected}, not ${mediaType}`);
  }
  // Empty raw data is data (a heartbeat, a trigger); every other format needs at least one token.
  if (payload.byteLength === 0 && format !== 'raw') return fail('FG_ERR_PARSE_EMPTY');
  switch (format) {
    case 'senml+json': {
      const pack = decode(() => JSON.parse(text(payload)) as unknown, 'JSON');
      return pack.ok ? senml(pack.value, nowSeconds, encodeSenmlJson) : pack;
    }
    case 'senml+cbor': {
      const pack = decode(() => decodeSenmlCbor(payload), 'CBOR');
      return pack.ok ? senml(pack.value, nowSeconds, encodeSenmlCbor) : pack;
    }
    case 'json': {
      const parsed = decode(() => JSON.parse(text(payload)) as unknown, 'JSON');
      return parsed.ok ? ok(payload) : parsed;
    }
    case 'raw':
      return ok(payload);
  }
}

function senml(pack: unknown, nowSeconds: number, encode: typeof encodeSenmlJson): Result<Uint8Array> {
  const checked = validateSenml(pack);
  if (!checked.ok) return fail('FG_ERR_SENML_INVALID', checked.message, { index: checked.index, rule: checked.rule });
  return ok(encode(resolveSenml(checked.records, nowSeconds)));
}

function decode(parse: () => unknown, what: string): Result<unknown> {
  try {
    return ok(parse());
  } catch (err) {
    return fail('FG_ERR_PAYLOAD_MALFORMED', `payload is not valid ${what}: ${(err as Error).message}`);
  }
}

function text(payload: Uint8Array): string {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
}
