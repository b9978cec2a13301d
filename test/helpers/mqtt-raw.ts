/**
 * A CONNECT packet built by hand (MQTT 3.1.1 §3.1), for what client libraries refuse to send: a zero-length client
 * id without a clean session [MQTT-3.1.3-8].
 */
export function rawConnect(clientId: string, clean: boolean, username: string, password: string): Buffer {
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const flags = 0x80 | 0x40 | (clean ? 0x02 : 0);
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, flags, 0, 30]), str(clientId), str(username), str(password)]);
  const length: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    length.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...length]), body]);
}
