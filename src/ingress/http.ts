import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { credentialFromAuthorization } from '../auth/credentials.ts';
import { fail, type Failure } from '../errors.ts';
import { parseMediaType, parsePath } from '../pipeline/parse.ts';
import { kPermission } from '../registry/types.ts';
import { declaredTooLarge, readBody } from './body.ts';
import type { IngressContext } from './context.ts';
import { writeFailure } from './respond.ts';

/** DESIGN.md §3 HTTP publish routes; all share one handler. */
export const kHttpPublishPatterns = ['/http/m/*', '/m/*', '/http/channels/*', '/channels/*'] as const;

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
    const admission = pipeline.admit(credentialFromAuthorization(authorization), target.value, kPermission.publish);
    if (!admission.ok) return refuse(admission);
    if (declaredTooLarge(contentLength, config.maxPayload)) return refuse(fail('FG_ERR_PARSE_TOO_LARGE', `body exceeds ${config.maxPayload} bytes`));

    const settle = inflight.begin();
    res.onAborted(settle);
    readBody(res, config.maxPayload, (body) => {
      const result = body.ok ? pipeline.publish(admission.value, 'http', target.value, parseMediaType(contentType), body.value) : body;
      if (result.ok) {
        res.writeStatus('202 Accepted').end();
        metrics.publishSeconds.observe((performance.now() - started) / 1000);
      } else refuse(result);
      // After the response is written: settling may let shutdown proceed.
      settle();
    });
  };

  for (const pattern of kHttpPublishPatterns) app.post(pattern, handler);
}
