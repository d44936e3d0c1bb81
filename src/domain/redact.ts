/**
 * Credentials carried inside URLs, wherever a URL turns up in text: an error message that quotes the URL it failed on,
 * a log line, a status reason. Pure, so the workflow and the CLI can use the same one the worker's logger does.
 */

/**
 * A scheme, `//`, then the authority up to where WHATWG URL ends it (`/ ? # \`), whitespace, or a character that a
 * serialised URL always percent-encodes in its userinfo (`" < > \` { } |`): text quoting a URL ends it with those.
 * Matching the whole authority and splitting at its last `@` in code (as the URL parser does) keeps this linear.
 */
const AUTHORITY = /([a-z][a-z0-9+.-]{0,31}:\/\/)([^\s/?#\\"<>`{}|]*)/gi;

/**
 * A query (or fragment) parameter whose name says it holds a secret: `access_token`, `api_key`, `X-Amz-Signature`,
 * `client_secret`, `password`, Azure's `sig`… The lookahead stays inside one name, so the scan stays linear; the
 * value runs to the next parameter, never stopping early inside a secret.
 */
const SECRET_PARAM =
  /([?&#;])(?=(?:[^=&#;?\s]*(?:token|key|secret|passw(?:or)?d|pwd|signature|credential|auth)[^=&#;?\s]*|sig)=)([^=&#;?\s]+)=[^&#\s]+/gi;

export const REDACTED = '***';

/**
 * `scheme://user:password@host` → `scheme://***@host` (also a bare `user@`), and the value of every secret-looking
 * query parameter → `***`, anywhere in `text`. Errs on the side of hiding: text glued to a URL without a space
 * (`http://a.example,"b@c"`) may lose the host, never the password.
 */
export function redactUrlCredentials(text: string): string {
  let out = text;
  if (out.includes('://')) {
    out = out.replace(AUTHORITY, (match, scheme: string, authority: string) => {
      const at = authority.lastIndexOf('@');
      return at <= 0 ? match : `${scheme}${REDACTED}${authority.slice(at)}`;
    });
  }
  if (out.includes('='))
    out = out.replace(SECRET_PARAM, (_match, sep: string, name: string) => `${sep}${name}=${REDACTED}`);
  return out;
}
