/**
 * Where the password reset mail points when FLEETGATE_PASSWORD_RESET_URL is not set: this gateway's own form
 * (GET /password/reset), on the port it really listens on. Plain HTTP when it is on, else HTTPS; `localhost` for a
 * wildcard host, which suits a gateway tried on one's own machine. Reached by another name, set the setting.
 */
export function defaultResetUrl(host: string, ports: { readonly http: number | null; readonly https: number | null }): string {
  const name = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  if (ports.http !== null) return `http://${name}:${ports.http}/password/reset`;
  if (ports.https !== null) return `https://${name}:${ports.https}/password/reset`;
  return `http://${name}/password/reset`;
}
