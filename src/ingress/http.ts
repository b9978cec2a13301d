import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { auditAdmission } from '../audit.ts';
import { connectionCredential } from '../auth/certificate.ts';
import { fail, type Failure, type Result } from '../errors.ts';
import type { Admission, Admitted } from '../pipeline/index.ts';
import { parseMediaType, parsePath } from '../pipeline/parse.ts';
import { kPermission } from '../registry/types.ts';
import { declaredTooLarge, readBody } from './body.ts';
import type { IngressContext } from './context.ts';
import { remoteAddress } from './remote.ts';
import { writeFailure } from './respond.ts';

/** DESIGN.md §3 HTTP publish routes; all share one handler. */
const kHttpPublishPatterns = ['/http/m/*', '/m/*', '/http/channels/*', '/channels/*'] as const;

/**
 * HTTP publish: `POST /http/m/<domain>/c/<channel>[/<subtopic>]` (and the other §3 forms) -> 202, or the error of the
 * registry. The target and the credential are checked before the body is read, so a refused request costs no body.
 */
export function mountHttpPublish(app: TemplatedApp, ctx: IngressContext): void {
  const { pipeline, metrics, config, inflight } = ctx;

  const handler = (res: HttpResponse, req: HttpRequest): void => {
    const started = performance.now();
    // uWS rule: everything needed from req is copied now; req is gone after this function returns.
    const path = req.getUrl();
    const authorization = req.getHeader('authorization');
    const contentType = req.getHeader('content-type');
    const contentLength = req.getHeader('content-length');

    const refuse = (failure: Failure): void => {
      pipeline.rejected('http', failure);
      writeFailure(res, failure);
      metrics.publishSeconds.observe((performance.now() - started) / 1000);
    };

    if (ctx.closing()) return refuse(fail('FG_ERR_SHUTTING_DOWN'));
    const target = parsePath(path, '/http');
    if (!target.ok) return refuse(target);
    if (declaredTooLarge(contentLength, config.maxPayload)) return refuse(fail('FG_ERR_PARSE_TOO_LARGE', `body exceeds ${config.maxPayload} bytes`));
    const credential = connectionCredential(authorization, ctx.peers?.of(res), config.tlsIdentity);
    const admission = ctx.limiter.guard('http', credential, () => remoteAddress(res, ctx.peers), () => pipeline.admit(credential, target.value, kPermission.publish, 'http'));
    // Audited: refusals, and successes verified by the workers (a cache hit reuses a decision; auditing it would be
    // a line per message).
    const audit = (a: Admitted, remote: string): void => auditAdmission(ctx.audit, { protocol: 'http', remote, credential, action: 'publish', target: path }, a);

    /** `borrowed`: read without `keep`, the body may be a view into uWS memory that lives only during this call. */
    const finish = (admitted: Admission, body: Result<Uint8Array>, borrowed: boolean): void => {
      const result = body.ok ? pipeline.publish(admitted, 'http', target.value, parseMediaType(contentType), body.value, borrowed) : body;
      if (result.ok) {
        res.writeStatus('202 Accepted').end();
        metrics.publishSeconds.observe((performance.now() - started) / 1000);
      } else refuse(result);
    };

    const settle = inflight.begin();
    if (!(admission instanceof Promise)) {
      // Hot path: credential answered from memory, so refusals cost no body and the body needs no copy.
      if (!admission.ok) {
        settle();
        audit(admission, remoteAddress(res, ctx.peers));
        return refuse(admission);
      }
      res.onAborted(settle);
      readBody(res, config.maxPayload, (body) => {
        finish(admission.value, body, true);
        // After the response is written: settling may let shutdown proceed.
        settle();
      });
      return;
    }

    // Cold path: a token goes to the worker pool; the body streams in meanwhile, and the answer is corked in later.
    let aborted = false;
    let body: Result<Uint8Array> | undefined;
    let admitted: Result<Admission> | undefined;
    const remote = remoteAddress(res, ctx.peers);
    const complete = (): void => {
      if (aborted || body === undefined || admitted === undefined) return;
      const [a, b] = [admitted, body];
      res.cork(() => (a.ok ? finish(a.value, b, false) : refuse(a)));
      settle();
    };
    res.onAborted(() => {
      aborted = true;
      settle();
    });
    readBody(res, config.maxPayload, (b) => {
      body = b;
      complete();
    }, true);
    void admission.then((a) => {
      audit(a, remote);
      admitted = a;
      complete();
    });
  };

  for (const pattern of kHttpPublishPatterns) app.post(pattern, handler);
}
