import { createServer, type DetailedPeerCertificate, type Server, type TLSSocket } from 'node:tls';
import type { PeerCertificate } from '../auth/certificate.ts';
import type { Logger } from '../log.ts';
import type { TlsMaterial } from './material.ts';

/**
 * A Node TLS server (MQTTS, the mutual-TLS terminator) with the configured material: client certificates asked for
 * when there is a client CA, and required in `required` mode. Each connection is handed on with its certificate.
 */
export function createTlsServer(material: TlsMaterial, logger: Logger, onConnection: (socket: TLSSocket, peer: PeerCertificate | undefined) => void): Server {
  const server = createServer({ ...material.options, requestCert: material.mutual, rejectUnauthorized: material.required }, (socket: TLSSocket) => {
    onConnection(socket, material.mutual ? peerOf(socket, material.depth) : undefined);
  });
  server.on('tlsClientError', (err) => logger.debug({ err: err.message }, 'TLS handshake refused'));
  return server;
}

/**
 * The client certificate of a finished handshake: undefined when none was presented, refused (with OpenSSL's reason:
 * unknown CA, expired, revoked...) when it does not verify against the client CA and CRLs or chains through more CA
 * certificates than `depth`, else its subject CN.
 */
function peerOf(socket: TLSSocket, depth: number): PeerCertificate | undefined {
  const certificate = socket.getPeerCertificate(true);
  if (certificate === null || Object.keys(certificate).length === 0) return undefined;
  if (!socket.authorized) return { ok: false, reason: String(socket.authorizationError ?? 'not verified') };
  const issuers = issuerCount(certificate);
  if (issuers > depth) return { ok: false, reason: `chain has ${issuers} CA certificates, FLEETGATE_TLS_CLIENT_DEPTH allows ${depth}` };
  const cn = certificate.subject?.CN;
  // A subject may repeat CN; one identity only.
  if (typeof cn !== 'string' || cn.length === 0) return { ok: false, reason: 'certificate has no single subject CN' };
  return { ok: true, cn };
}

/** CA certificates above a verified certificate, up to its trust anchor (Node links a self-signed root to itself). */
function issuerCount(certificate: DetailedPeerCertificate): number {
  let count = 0;
  for (let c = certificate; c.issuerCertificate !== undefined && c.issuerCertificate.fingerprint256 !== c.fingerprint256; c = c.issuerCertificate) count++;
  return count;
}
