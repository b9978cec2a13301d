import { fail } from '../errors.ts';
import { credentialFromAuthorization, type Credential } from './credentials.ts';
import { digestSecret } from './secret.ts';

/** What the TLS layer knows of a connection's client certificate: verified (with its CN), or refused and why. */
export type PeerCertificate = { readonly ok: true; readonly cn: string } | { readonly ok: false; readonly reason: string };

/** How a certificate names its client (FLEETGATE_TLS_IDENTITY). */
export type CertificateIdentity = 'secret' | 'client_id';

/** The credential of a request or connection: its client certificate's when it has one, else what it sent. */
export function connectionCredential(sent: string, peer: PeerCertificate | undefined, identity: CertificateIdentity): Credential | undefined {
  return peer === undefined ? credentialFromAuthorization(sent) : credentialFromCertificate(peer, sent, identity);
}

/**
 * DESIGN.md §4.3: a verified client certificate is the credential. Its CN is the client's secret (Magistrala) or its
 * id. A credential sent alongside (`Authorization`, `?authorization=`, an MQTT password) must name the same client:
 * the same secret as the CN (`Client <CN>`, `Thing <CN>` or the bare CN), or, with CN = client id, that client's own
 * secret; anything else is refused with 403, so a stolen secret cannot ride on someone else's certificate.
 */
export function credentialFromCertificate(peer: PeerCertificate, sent: string, identity: CertificateIdentity): Credential {
  if (!peer.ok) return { kind: 'refused', failure: fail('FG_ERR_AUTHN_INVALID', `client certificate refused: ${peer.reason}`) };
  const alongside = credentialFromAuthorization(sent);
  if (identity === 'client_id') {
    if (alongside === undefined) return { kind: 'certificate', clientId: peer.cn };
    return alongside.kind === 'secret' ? { kind: 'certificate', clientId: peer.cn, digest: alongside.digest } : kMismatch;
  }
  const own: Credential = { kind: 'secret', digest: digestSecret(peer.cn) };
  if (alongside === undefined) return own;
  // Digests of equal length, compared as strings: equality of two SHA-256 digests tells nothing about either secret.
  return alongside.kind === 'secret' && alongside.digest === own.digest ? own : kMismatch;
}

export const kCertificateMismatch = fail('FG_ERR_AUTHZ_FORBIDDEN', 'credential does not match the client certificate');
const kMismatch: Credential = { kind: 'refused', failure: kCertificateMismatch };
