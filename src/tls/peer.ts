import type { TLSSocket } from 'node:tls';
import type { PeerCertificate } from '../auth/certificate.ts';

/**
 * The client certificate of a finished handshake: undefined when none was presented, refused (with OpenSSL's reason:
 * unknown CA, expired, revoked...) when it does not verify against the client CA and CRLs, else its subject CN.
 */
export function peerOf(socket: TLSSocket): PeerCertificate | undefined {
  const certificate = socket.getPeerCertificate();
  if (certificate === null || Object.keys(certificate).length === 0) return undefined;
  if (!socket.authorized) return { ok: false, reason: String(socket.authorizationError ?? 'not verified') };
  const cn = certificate.subject?.CN;
  // A subject may repeat CN; one identity only.
  if (typeof cn !== 'string' || cn.length === 0) return { ok: false, reason: 'certificate has no single subject CN' };
  return { ok: true, cn };
}
