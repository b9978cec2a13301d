import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp, type WebSocket, type us_socket_context_t } from 'uWebSockets.js';
import { auditAdmission, refusalKind, who } from '../audit.ts';
import { connectionCredential } from '../auth/certificate.ts';
import { fail, kErrors, type Failure } from '../errors.ts';
import type { Subscriber } from '../fanout/subscriptions.ts';
import type { Admission, Admitted } from '../pipeline/index.ts';
import { lacking } from '../pipeline/authorize.ts';
import { parsePath } from '../pipeline/parse.ts';
import { kPermission } from '../registry/types.ts';
import type { Message, Target } from '../types.ts';
import { Dependents, ownersOf, recheckOnChange } from '../dependents.ts';
import type { IngressContext } from './context.ts';
import { remoteAddress } from './remote.ts';
import { ExpiryTimer } from './expiry.ts';
import { writeFailure } from './respond.ts';

/** DESIGN.md §3 WebSocket paths. */
const kWsPatterns = ['/ws/*', '/m/*', '/channels/*'] as const;

interface Session {
  readonly id: number;
  readonly remote: string;
  readonly target: Target;
  admission: Admission;
  subscriber: Subscriber | undefined;
  /** closes the socket when its token expires */
  expiry: ExpiryTimer | undefined;
  /** false once we started closing it: no more sends or closes from our side */
  open: boolean;
  /** true once uWS reported the close: bookkeeping is undone exactly once */
  closed: boolean;
  /** payloads delivered this turn of the event loop, written together at its end (see `flush`) */
  readonly outbox: Uint8Array[];
}

type Socket = WebSocket<Session>;

const kAnyAction = kPermission.publish | kPermission.subscribe;
// RFC 6455 §5.5: a close frame's reason is at most 123 bytes.
const kMaxReason = 123;

/**
 * WebSocket publish/subscribe on a channel path. The upgrade authenticates and authorises (publish or subscribe is
 * enough to connect); a client allowed to subscribe gets every matching message as one binary frame; every frame it
 * sends is published after the same checks as an HTTP publish. Errors after the upgrade close the socket with the
 * registry's close code and `FG_ERR_*: message` as the reason; a socket opened with a token is closed when it expires.
 */
export function mountWs(app: TemplatedApp, ctx: IngressContext) {
  const { pipeline, subscriptions, metrics, config, logger } = ctx;
  const sockets = new Set<Socket>();
  const byOwner = new Dependents<Socket>();
  const byChannel = new Dependents<Socket>();
  const gauge = metrics.connections('ws');
  const subscribed = metrics.subscriptions('ws');
  let nextId = 1;

  const end = (ws: Socket, failure: Failure): void => {
    const session = ws.getUserData();
    if (!session.open) return;
    session.open = false;
    ws.end(kErrors[failure.code].ws, Buffer.from(`${failure.code}: ${failure.message}`).subarray(0, kMaxReason));
  };

  // A send outside a uWS callback of that very socket is one write syscall: 97% of a 1 -> 1000 fan-out profile. So
  // deliveries are queued per subscriber and leave once per turn of the event loop, each subscriber corked: one
  // write per subscriber per turn (a message's payload is its own, so it may wait). Held with their sessions: a
  // socket closed before the flush must not be touched (uWS throws).
  const pending: [Socket, Session][] = [];
  const flush = (): void => {
    for (const [ws, session] of pending) {
      if (session.open) ws.cork(() => send(ws, session));
      session.outbox.length = 0;
    }
    pending.length = 0;
  };
  const send = (ws: Socket, session: Session): void => {
    for (const payload of session.outbox) {
      // uWS send: 1 written through, 0 queued (backpressure), 2 dropped at the hard limit. Past our budget the
      // subscriber is closed: the close frame still fits under the hard limit, so it arrives as a clean 1013.
      const status = ws.send(payload, true, false);
      if (status !== 1 && (status === 2 || ws.getBufferedAmount() > config.wsMaxBackpressure)) {
        metrics.dropped('ws');
        logger.warn({ conn_id: session.id, transport: 'ws', code: 'FG_ERR_SLOW_CONSUMER' }, 'subscriber dropped');
        return end(ws, fail('FG_ERR_SLOW_CONSUMER'));
      }
    }
  };

  const subscriberFor = (ws: Socket, session: Session): Subscriber => ({
    deliver(message: Message): void {
      if (session.outbox.push(message.payload) > 1) return;
      if (pending.push([ws, session]) === 1) setImmediate(flush);
    },
  });

  /** Re-runs admission for a live socket (registry changed): closes it if it may no longer do what it does. */
  const recheck = (ws: Socket): void => {
    const session = ws.getUserData();
    const admission = pipeline.reauthorize(session.admission.principal, session.target, kAnyAction);
    if (!admission.ok) return end(ws, admission);
    if (session.subscriber !== undefined && (admission.value.permissions & kPermission.subscribe) === 0) {
      return end(ws, fail('FG_ERR_AUTHZ_FORBIDDEN', 'subscribe permission removed'));
    }
    session.admission = admission.value;
  };

  const upgrade = (res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void => {
    // uWS rule: copy everything out of req before anything may wait.
    const path = req.getUrl();
    const authorization = req.getHeader('authorization') || (req.getQuery('authorization') ?? '');
    const key = req.getHeader('sec-websocket-key');
    const protocols = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const remote = remoteAddress(res, ctx.peers);

    if (ctx.closing()) return writeFailure(res, fail('FG_ERR_SHUTTING_DOWN'));
    const target = parsePath(path, '/ws');
    if (!target.ok) return writeFailure(res, target);

    const credential = connectionCredential(authorization, ctx.peers?.of(res), ctx.config.tlsIdentity);
    const answer = (admission: Admitted): void => {
      auditAdmission(ctx.audit, { protocol: 'ws', remote, credential, action: 'connect', target: path }, admission);
      if (!admission.ok) {
        // Refused credentials and rights are logged by the audit; the rest here.
        if (refusalKind(admission.code) === undefined) logger.info({ transport: 'ws', remote, code: admission.code, reason: admission.message, path }, 'upgrade refused');
        return writeFailure(res, admission);
      }
      const session: Session = { id: nextId++, remote, target: target.value, admission: admission.value, subscriber: undefined, expiry: undefined, open: true, closed: false, outbox: [] };
      // Echo the first offered subprotocol: clients that offer one refuse a handshake that picks none.
      res.upgrade(session, key, protocols.split(',')[0]!.trim(), extensions, context);
    };
    const admission = ctx.limiter.guard('ws', credential, () => remote, () => pipeline.admit(credential, target.value, kAnyAction, 'ws'));
    if (!(admission instanceof Promise)) return answer(admission);
    // uWS UpgradeAsync: the request may go away while the pool verifies the token.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    void admission.then((a) => {
      if (!aborted) res.cork(() => answer(a));
    });
  };

  const behavior: uWS.WebSocketBehavior<Session> = {
    // uWS hard-closes (1006) a message over its limit; with twice the configured limit it accepts what is merely too
    // large, so the client gets a proper 1009 from us while memory stays bounded.
    maxPayloadLength: config.maxPayload * 2,
    // A hard backstop above our own budget (see subscriberFor), with room for the message that crossed it.
    maxBackpressure: config.wsMaxBackpressure + 4 * config.maxPayload,
    closeOnBackpressureLimit: 0,
    idleTimeout: config.wsIdleTimeout,
    sendPingsAutomatically: true,
    upgrade,
    open(ws) {
      const session = ws.getUserData();
      const { channel, principal, permissions } = session.admission;
      sockets.add(ws);
      for (const owner of ownersOf(principal)) byOwner.add(owner, ws);
      byChannel.add(channel.id, ws);
      gauge.inc();
      session.expiry = new ExpiryTimer(principal.expiresAt, () => end(ws, fail('FG_ERR_AUTHN_EXPIRED')));
      if ((permissions & kPermission.subscribe) !== 0) {
        session.subscriber = subscriberFor(ws, session);
        subscriptions.add(channel.id, session.target.subtopic, session.target.wildcard, session.subscriber);
        subscribed.inc();
      }
      logger.info({ conn_id: session.id, transport: 'ws', remote: session.remote, [principal.kind + '_id']: principal.id, channel: channel.id, subscribed: session.subscriber !== undefined }, 'connected');
    },
    message(ws, data) {
      const session = ws.getUserData();
      if (data.byteLength > config.maxPayload) {
        return end(ws, pipeline.rejected('ws', fail('FG_ERR_PARSE_TOO_LARGE', `message exceeds ${config.maxPayload} bytes`)));
      }
      // The admission is kept current by registry events (recheck), so a frame only needs the publish bit.
      const refused = lacking(session.admission.permissions, kPermission.publish);
      if (refused !== undefined) {
        const { principal, channel } = session.admission;
        ctx.audit.authz({ protocol: 'ws', remote: session.remote, ...who(principal), action: 'publish', target: channel.id, failure: refused });
        return end(ws, pipeline.rejected('ws', refused));
      }
      // The frame's memory belongs to uWS until this callback returns.
      const result = pipeline.publish(session.admission, 'ws', session.target, undefined, new Uint8Array(data), true);
      if (!result.ok) {
        const { principal } = session.admission;
        logger.info({ conn_id: session.id, transport: 'ws', remote: session.remote, [principal.kind + '_id']: principal.id, code: result.code, reason: result.message }, 'publish refused');
        end(ws, result);
      }
    },
    close(ws, code) {
      const session = ws.getUserData();
      if (session.closed) return;
      session.closed = true;
      session.open = false;
      session.expiry?.cancel();
      const { principal, channel } = session.admission;
      sockets.delete(ws);
      for (const owner of ownersOf(principal)) byOwner.delete(owner, ws);
      byChannel.delete(channel.id, ws);
      gauge.dec();
      if (session.subscriber !== undefined) {
        subscriptions.remove(channel.id, session.target.subtopic, session.target.wildcard, session.subscriber);
        subscribed.dec();
      }
      logger.info({ conn_id: session.id, transport: 'ws', [principal.kind + '_id']: principal.id, code }, 'closed');
    },
  };

  for (const pattern of kWsPatterns) app.ws(pattern, behavior);

  return {
    /** Registry listeners: re-check exactly the sockets that depend on what changed. */
    ...recheckOnChange(byOwner, byChannel, recheck),
    closeAll(): void {
      for (const ws of [...sockets]) end(ws, fail('FG_ERR_SHUTTING_DOWN'));
    },
  };
}
