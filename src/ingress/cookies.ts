/** The value of one cookie in a `Cookie` header, or "" when it is not there. */
export function cookieValue(header: string, name: string): string {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return '';
}

/**
 * A `Set-Cookie` value for a session cookie: HttpOnly (scripts never see tokens), Secure, and SameSite=Lax, which
 * still sends it on the top-level redirect back from an identity provider but not on cross-site POSTs. Max-Age 0
 * deletes it.
 */
export function sessionCookie(name: string, value: string, maxAge: number, path = '/'): string {
  return `${name}=${value}; Path=${path}; Max-Age=${maxAge}; HttpOnly; Secure; SameSite=Lax`;
}
