import { createServer, type Server, type TLSSocket } from 'node:tls';
import type { PeerCertificate } from '../auth/certificate.ts';
import type { Logger } from '../log.ts';
import type { TlsMaterial } from './material.ts';

/**
 * A Node TLS server (MQTTS, the mutual-TLS terminator) with the configured material: client certificates asked for
 * when there is a client CA, and required in `required` mode. Each connection is handed on with its certificate.
 */
export function createTlsServer(material: TlsMaterial, logger: Logger, onConnection: (socket: TLSSocket, peer: PeerCertificate | undefined) => void): Server {
  const server = createServer({ ...material.options, requestCert: material.mutual, rejectUnauthorized: material.required }, (socket: TLSSocket) => {
    onConnection(socket, material.mutual ? peerOf(socket) : undefined);
  });
  server.on('tlsClientError', (err) => logger.debug({ err: err.message }, 'TLS handshake refused'));
  return server;
}

/**
 * The client certificate of a finished handshake: undefined when none was presented, refused (with OpenSSL's reason:
 * unknown CA, expired, revoked...) when it does not verify against the client CA and CRLs, else its subject CN.
 */
function peerOf(socket: TLSSocket): PeerCertificate | undefined {
  const certificate = socket.getPeerCertificate();
  if (certificate === null || Object.keys(certificate).length === 0) return undefined;
  if (!socket.authorized) return { ok: false, reason: String(socket.authorizationError ?? 'not verified') };
  const cn = certificate.subject?.CN;
  // A subject may repeat CN; one identity only.
  if (typeof cn !== 'string' || cn.length === 0) return { ok: false, reason: 'certificate has no single subject CN' };
  return { ok: true, cn };
}
