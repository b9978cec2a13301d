/**
 * A claim named by a setting (FLEETGATE_OIDC_SUBJECT_CLAIM, _ACL_CLAIM, _ROLES_CLAIM): a top-level name, or a dotted
 * path into nested objects, as Keycloak nests its roles (`realm_access.roles`, `resource_access.<client>.roles`).
 * A top-level claim whose name holds dots wins over the path (Auth0's namespaced `https://example.com/roles`).
 * Own properties only: a path never reaches `__proto__` or `constructor`.
 */
export function claimAt(claims: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(claims, path)) return claims[path];
  let value: unknown = claims;
  for (const name of path.split('.')) {
    if (typeof value !== 'object' || value === null || !Object.hasOwn(value, name)) return undefined;
    value = (value as Record<string, unknown>)[name];
  }
  return value;
}
