import { readFileSync } from 'node:fs';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import type { GatewayConfig } from '../config.ts';

/** The server's TLS material, read from the files the config names (never from the environment itself). */
export interface TlsMaterial {
  readonly options: SecureContextOptions;
  /** client certificates are asked for (a client CA is configured) */
  readonly mutual: boolean;
  readonly required: boolean;
  /** CA certificates allowed above a client certificate (Node cannot set OpenSSL's verify depth) */
  readonly depth: number;
}

/**
 * Reads certificate, key, client CA and CRLs. Each CRL becomes its own entry: Node checks every CA of a chain against
 * `crl` only when each has its own list in the array, and a file holding two concatenated CRLs did not work as one
 * entry (DESIGN.md, issue 5), so files are split into their PEM blocks.
 */
export function readTlsMaterial(config: GatewayConfig): TlsMaterial {
  const mutual = config.tlsClientCa !== '';
  const crl = config.tlsClientCrl.flatMap((file) => pemBlocks(readFileSync(file, 'utf8'), 'X509 CRL'));
  const options: SecureContextOptions = {
    cert: readFileSync(config.tlsCert),
    key: readFileSync(config.tlsKey),
    ...(mutual && { ca: readFileSync(config.tlsClientCa) }),
    ...(crl.length > 0 && { crl }),
  };
  // Fails here, with OpenSSL's reason, on a bad PEM or a key that does not match the certificate: at start, or at a
  // reload, which then keeps the material it had.
  createSecureContext(options);
  return { options, mutual, required: mutual && config.tlsClientAuth === 'required', depth: config.tlsClientDepth };
}

function pemBlocks(text: string, label: string): string[] {
  const pattern = new RegExp(`-----BEGIN ${label}-----[\\s\\S]+?-----END ${label}-----`, 'g');
  const blocks = text.match(pattern) ?? [];
  if (blocks.length === 0) throw new Error(`no ${label} in the file`);
  return blocks;
}
