import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { GatewayError, kErrors } from '../errors.ts';
import type { IngressContext } from './context.ts';
import { readBody } from './body.ts';
import { statusLine } from './respond.ts';

const kMaxFormBody = 8 * 1024;

/**
 * Nothing but this page may run or load anything, it may not be framed, and the token in its URL is not sent on as a
 * Referer. The form posts to the page's own URL (no `action`), so the token never enters the HTML: no script, no
 * escaping of the token, nothing for a CSP to relax.
 */
const kHeaders: readonly (readonly [string, string])[] = [
  ['content-type', 'text/html; charset=utf-8'],
  ['content-security-policy', "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"],
  ['referrer-policy', 'no-referrer'],
  ['x-frame-options', 'DENY'],
  ['cache-control', 'no-store'],
];

const kForm = `<form method="post">
<p><label>New password (at least 8 characters)<br><input type="password" name="password" autocomplete="new-password" minlength="8" required></label></p>
<p><label>The same again<br><input type="password" name="confirm_password" autocomplete="new-password" minlength="8" required></label></p>
<p><button type="submit">Set the password</button></p>
</form>`;

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>fleetgate: ${title}</title></head>
<body><main><h1>${title}</h1>
${body}
</main></body></html>
`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function writeHtml(res: HttpResponse, status: number, html: string): void {
  res.writeStatus(statusLine(status));
  for (const [name, value] of kHeaders) res.writeHeader(name, value);
  res.end(html);
}

/**
 * The page the password reset mail links to (`<reset URL>?token=<recovery token>`, FLEETGATE_PASSWORD_RESET_URL's
 * default): `GET /password/reset` shows a form; it posts, form-encoded, to the same URL, which does what
 * `PUT /password/reset` (JSON, Bearer recovery token) does for API clients.
 */
export function mountResetForm(app: TemplatedApp, ctx: IngressContext): void {
  const { users, inflight, logger } = ctx;
  const kTitle = 'Choose a new password';

  app.get('/password/reset', (res, req) => {
    const hasToken = new URLSearchParams(req.getQuery() ?? '').has('token');
    if (hasToken) writeHtml(res, 200, page(kTitle, kForm));
    else writeHtml(res, 400, page(kTitle, '<p>Open this page from the link in your password reset mail: it carries the token this form needs.</p>'));
  });

  app.post('/password/reset', (res, req) => {
    const token = new URLSearchParams(req.getQuery() ?? '').get('token') ?? '';
    let aborted = false;
    const settle = inflight.begin();
    res.onAborted(() => {
      aborted = true;
      settle();
    });
    const reply = (status: number, html: string) => {
      settle();
      if (!aborted) res.cork(() => writeHtml(res, status, html));
    };
    const refuse = (err: GatewayError) => reply(kErrors[err.code].status, page(kTitle, `<p role="alert">${escapeHtml(err.message)}</p>\n${kForm}`));

    readBody(res, kMaxFormBody, (body) => {
      if (!body.ok) return refuse(new GatewayError(body.code, body.message));
      // Parsed here, synchronously: the body view is only valid inside this callback.
      const form = new URLSearchParams(Buffer.from(body.value.buffer, body.value.byteOffset, body.value.byteLength).toString('utf8'));
      const input = { password: form.get('password') ?? '', confirm_password: form.get('confirm_password') ?? '' };
      if (ctx.closing()) return refuse(new GatewayError('FG_ERR_SHUTTING_DOWN'));
      users.reset(token, input).then(
        () => reply(200, page('Password changed', '<p>Your password is changed, and every session of your account is signed out: sign in again with the new password.</p>')),
        (err: unknown) => {
          if (err instanceof GatewayError) return refuse(err);
          logger.error({ err }, 'password reset failed');
          refuse(new GatewayError('FG_ERR_INTERNAL'));
        },
      );
    });
  });
}
