import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTransport } from 'nodemailer';

export interface Mail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
}

export interface Mailer {
  send(mail: Mail): Promise<void>;
}

/**
 * `smtp://user:pass@host:587` or `smtps://...` (nodemailer), or `file:<dir>`: a development outbox, one file per mail
 * (`<time>-<to>.txt`), so the reset flow can be followed without a mail server.
 */
export function createMailer(url: string, from: string): Mailer {
  if (url.startsWith('file:')) {
    const dir = url.slice('file:'.length);
    return {
      async send({ to, subject, text }) {
        await mkdir(dir, { recursive: true });
        const name = `${new Date().toISOString().replace(/[:.]/g, '-')}-${to.replace(/[^\w@.-]/g, '_')}.txt`;
        await writeFile(join(dir, name), `From: ${from}\nTo: ${to}\nSubject: ${subject}\n\n${text}\n`, { mode: 0o600 });
      },
    };
  }
  const transport = createTransport(url);
  return {
    async send({ to, subject, text }) {
      await transport.sendMail({ from, to, subject, text });
    },
  };
}
