import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailer } from '../../src/users/mailer.ts';
import { http } from '../helpers/clients.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';

// A real SMTP server in this process (the smtp-server package, nodemailer's sibling): each message as it arrived.
const received: string[] = [];
let smtp: SMTPServer;
let port: number;

beforeAll(async () => {
  smtp = new SMTPServer({
    // Plain SMTP on loopback, no login: what a local relay offers. (STARTTLS would need a certificate nodemailer trusts.)
    disabledCommands: ['STARTTLS'],
    authOptional: true,
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        received.push(Buffer.concat(chunks).toString());
        callback();
      });
    },
  });
  port = await new Promise<number>((resolve) => {
    const server = smtp.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
});
afterAll(() => new Promise<void>((resolve) => smtp.close(resolve)));

/** The first received message that contains `text`. */
const mailWith = async (text: string) => {
  await expect.poll(() => received.find((m) => m.includes(text)), { timeout: 5000 }).toBeDefined();
  return received.find((m) => m.includes(text))!;
};

describe('mailer over SMTP (nodemailer)', () => {
  it('delivers a mail to an SMTP server', async () => {
    await createMailer(`smtp://127.0.0.1:${port}`, 'fleetgate@example.com').send({ to: 'ana@example.com', subject: 'hello', text: 'body text' });
    const mail = await mailWith('To: ana@example.com');
    expect(mail).toContain('Subject: hello');
    expect(mail).toContain('From: fleetgate@example.com');
    expect(mail).toContain('body text');
  });

  it('sends the password reset link through it', async () => {
    let gw: TestGateway | undefined;
    try {
      gw = await startGateway({ mailUrl: `smtp://127.0.0.1:${port}`, mailFrom: 'noreply@fleet.example', passwordResetUrl: 'https://ui.example/reset' });
      await gw.gateway.users.register({ email: 'bo@example.com', password: 'long enough password' });
      expect((await http('POST', `${gw.http}/password/reset-request`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'bo@example.com' }) })).status).toBe(201);
      // The body is quoted-printable (RFC 2045 §6.7): decoded as a mail client would.
      const body = (await mailWith('To: bo@example.com'))
        .replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      const token = /https:\/\/ui\.example\/reset\?token=([\w.-]+)/.exec(body)?.[1];
      expect(token, body).toBeDefined();
      expect(JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString())).toMatchObject({ type: 2 });
    } finally {
      await gw?.close();
    }
  });
});
