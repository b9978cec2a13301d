import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMailer } from '../../src/users/mailer.ts';
import { http } from '../helpers/clients.ts';
import { startGateway, type TestGateway } from '../helpers/gateway.ts';

// A real SMTP server: Python's smtpd DebuggingServer prints every message it receives (Debian's python3 ships it).
let smtp: ChildProcess;
let port: number;
let received = '';

beforeAll(async () => {
  port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  smtp = spawn('python3', ['-W', 'ignore', '-u', '-m', 'smtpd', '-n', '-c', 'DebuggingServer', `127.0.0.1:${port}`]);
  smtp.stdout!.on('data', (d) => (received += d));
  // Ready once it accepts connections.
  const accepts = () => new Promise<boolean>((resolve) => {
    const probe = connect(port, '127.0.0.1', () => (probe.end(), resolve(true)));
    probe.on('error', () => resolve(false));
  });
  for (let i = 0; i < 100 && !(await accepts()); i++) await new Promise((r) => setTimeout(r, 100));
});
afterAll(() => {
  smtp.kill();
});

describe('mailer over SMTP (nodemailer)', () => {
  it('delivers a mail to an SMTP server', async () => {
    await createMailer(`smtp://127.0.0.1:${port}`, 'fleetgate@example.com').send({ to: 'ana@example.com', subject: 'hello', text: 'body text' });
    await expect.poll(() => received, { timeout: 5000 }).toContain('Subject: hello');
    expect(received).toContain('To: ana@example.com');
    expect(received).toContain('From: fleetgate@example.com');
  });

  it('sends the password reset link through it', async () => {
    let gw: TestGateway | undefined;
    try {
      gw = await startGateway({ mailUrl: `smtp://127.0.0.1:${port}`, mailFrom: 'noreply@fleet.example', passwordResetUrl: 'https://ui.example/reset' });
      await gw.gateway.users.register({ email: 'bo@example.com', password: 'long enough password' });
      expect((await http('POST', `${gw.http}/password/reset-request`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email: 'bo@example.com' }) })).status).toBe(201);
      await expect.poll(() => received, { timeout: 5000 }).toContain('To: bo@example.com');
      // DebuggingServer prints each line as b'...'; the body is quoted-printable (RFC 2045 §6.7), as a client decodes it.
      const body = received.split('\n').map((l) => /^b'(.*)'$/.exec(l)?.[1] ?? '').join('\n')
        .replace(/=\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      const token = /https:\/\/ui\.example\/reset\?token=([\w.-]+)/.exec(body)?.[1];
      expect(token, body).toBeDefined();
      expect(JSON.parse(Buffer.from(token!.split('.')[1]!, 'base64url').toString())).toMatchObject({ type: 2 });
    } finally {
      await gw?.close();
    }
  });
});
