import { BlockList, isIPv4, type Socket } from 'node:net';

// PROXY protocol v2 [haproxy proxy-protocol.txt §2.2]: 12-byte signature, version/command, family, length.
const kSignature = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const kHeaderLength = 16;
/** a header longer than this is not a proxy's */
const kMaxHeader = 16 + 216;

/** Whether a peer address is one of FLEETGATE_TRUSTED_PROXIES (CIDRs; IPv4-mapped IPv6 counts as IPv4). */
export type TrustedProxies = (address: string | undefined) => boolean;

export function trustedProxies(cidrs: readonly string[]): TrustedProxies {
  if (cidrs.length === 0) return () => false;
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split('/');
    const family = isIPv4(net!) ? 'ipv4' : 'ipv6';
    list.addSubnet(net!, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
  }
  return (address) => {
    if (address === undefined) return false;
    const plain = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
    return list.check(plain, isIPv4(plain) ? 'ipv4' : 'ipv6');
  };
}

/** The client address a PROXY v2 header names; the peer's own for LOCAL (a proxy's health check) or UNSPEC. */
function addressOf(header: Buffer, peer: string): string {
  const command = header[12]! & 0x0f;
  const family = header[13]! >> 4;
  if (command === 0x0 || family === 0x0) return peer;
  if (family === 0x1) return `${header[16]}.${header[17]}.${header[18]}.${header[19]}`;
  if (family === 0x2) {
    const words: string[] = [];
    for (let i = 0; i < 8; i++) words.push(header.readUInt16BE(16 + 2 * i).toString(16));
    return words.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
  }
  return peer;
}

/**
 * What comes first on a plain TCP connection (MQTT): from a trusted proxy, its PROXY v2 header, which names the
 * device's real address, read within `timeoutMs`; `ready` gets that address with the bytes after the header put back.
 * Anyone else's connection is handed on at once, untouched: a PROXY header from it is not a valid first MQTT packet
 * (CONNECT), so the broker refuses it, and nobody can claim another address.
 */
export function readProxyHeader(socket: Socket, trusted: TrustedProxies, timeoutMs: number, ready: (address: string) => void, refuse: (reason: string) => void): void {
  const peer = socket.remoteAddress ?? '';
  if (!trusted(peer)) return ready(peer);
  let head: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => stop(`no PROXY header within ${timeoutMs} ms`), timeoutMs);
  const onData = (chunk: Buffer): void => {
    head = head.length === 0 ? chunk : Buffer.concat([head, chunk]);
    const signed = startsWith(head, kSignature);
    if (signed === undefined) return; // too short to tell yet
    // a proxy may also forward a client of its own without a header (a health check of the MQTT port)
    if (!signed) return pass(peer, head);
    if (head.length < kHeaderLength) return;
    const length = kHeaderLength + head.readUInt16BE(14);
    if (length > kMaxHeader || (head[12]! & 0xf0) !== 0x20) return stop('malformed PROXY v2 header');
    if (head.length < length) return;
    pass(addressOf(head.subarray(0, length), peer), head.subarray(length));
  };
  const pass = (address: string, rest: Buffer): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    socket.pause();
    if (rest.length > 0) socket.unshift(rest);
    ready(address);
  };
  const stop = (reason: string): void => {
    clearTimeout(timer);
    socket.off('data', onData);
    refuse(reason);
    socket.destroy();
  };
  socket.on('data', onData);
  socket.on('error', () => clearTimeout(timer));
}

/** true / false, or undefined while `head` is a prefix of `prefix` */
function startsWith(head: Buffer, prefix: Buffer): boolean | undefined {
  const n = Math.min(head.length, prefix.length);
  if (head.compare(prefix, 0, n, 0, n) !== 0) return false;
  return head.length >= prefix.length ? true : undefined;
}
