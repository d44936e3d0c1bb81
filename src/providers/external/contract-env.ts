/**
 * The JSON document a user's command gets on stdin, as the `TOLLGATE_*` variables it also gets: one rule for targets,
 * hooks and job checks. `stableVersion` becomes TOLLGATE_STABLE_VERSION; a field that is absent or null (no stable
 * version yet) is left unset, so `${TOLLGATE_STABLE_VERSION:-}` and `"stableVersion": null` say the same.
 */
export function contractEnv(fields: Record<string, string | number | null | undefined>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(fields)) {
    if (value === undefined || value === null) continue;
    env[`TOLLGATE_${name.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`] = String(value);
  }
  return env;
}
