/**
 * `https://user:password@host/…` as HTTP basic auth. fetch refuses a URL that carries credentials, with an error that
 * quotes them; so they leave the URL (which is then safe to show) and travel as an `Authorization` header, percent-
 * decoded as curl sends them (`%40` is an `@`).
 */
export function splitUrlCredentials(input: string | URL): { url: URL; authorization?: string } {
  const url = new URL(input);
  if (!url.username && !url.password) return { url };
  const authorization = `Basic ${Buffer.from(`${decode(url.username)}:${decode(url.password)}`, 'utf8').toString('base64')}`;
  url.username = '';
  url.password = '';
  return { url, authorization };
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    return part; // a stray `%` is meant literally
  }
}
