import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { http, WsClient } from '../helpers/clients.ts';
import { provisionFleet, startGateway } from '../helpers/gateway.ts';

describe('graceful shutdown', () => {
  it('finishes a request whose body is still arriving, refuses new ones with 503, closes WebSockets with 1001', async () => {
    const gw = await startGateway({ shutdownTimeout: 5000 });
    const fleet = await provisionFleet(gw.gateway, { format: 'raw' });
    const device = await fleet.client('device', ['publish', 'subscribe']);
    const sub = await WsClient.connect(`${gw.ws}/ws/${fleet.topic}?authorization=${device.secret}`);

    // Start a publish and send only half of its body.
    const url = new URL(gw.http);
    const socket = connect(Number(url.port), url.hostname);
    const response = new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (d) => (data += d));
      socket.on('close', () => resolve(data));
    });
    socket.write(`POST /http/${fleet.topic} HTTP/1.1\r\nHost: x\r\nAuthorization: ${device.secret}\r\nContent-Length: 10\r\n\r\nhello`);
    await new Promise((r) => setTimeout(r, 100));

    // A keep-alive connection opened before shutdown, used after it began.
    const late = connect(Number(url.port), url.hostname);
    await new Promise((r) => late.once('connect', r));
    const lateReply = new Promise<string>((resolve) => late.once('data', (d) => resolve(d.toString())));

    const closing = gw.close();
    expect(await sub.closed).toMatchObject({ code: 1001, reason: expect.stringMatching(/^FG_ERR_SHUTTING_DOWN/) });
    let closed = false;
    void closing.then(() => (closed = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(closed, 'close() must wait for the request in flight').toBe(false);
    late.write(`POST /http/${fleet.topic} HTTP/1.1\r\nHost: x\r\nAuthorization: ${device.secret}\r\nContent-Length: 2\r\n\r\nhi`);
    const refused = await lateReply;
    expect(refused).toMatch(/^HTTP\/1\.1 503 Service Unavailable/);
    expect(refused).toMatch(/retry-after: 1/i);
    expect(refused).toContain('FG_ERR_SHUTTING_DOWN');

    socket.write('world');
    expect(await response).toMatch(/^HTTP\/1\.1 202 Accepted/);
    await closing;
    await expect(http('GET', gw.http + '/health')).rejects.toThrow();
  });
});
