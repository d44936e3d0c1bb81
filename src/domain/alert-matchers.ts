/**
 * Alertmanager's matcher syntax (`alertname="X"`, `severity=~"critical|page"`, `team!="infra"`), which every team
 * that routes alerts already writes. A value after `=~` or `!~` is matched against the whole label, as Alertmanager
 * anchors it, but only a subset of regular expressions is accepted — literals, `.`, `.*`, `.+`, `\` escapes and
 * top-level `|` — and matched without backtracking, so no matcher in a policy can stall a workflow task on a label
 * an alert sends.
 */

export const MATCHER_MAX_LENGTH = 512;
type Op = '=~' | '!~' | '!=' | '=';

/** One piece of a pattern: a literal character, any one character, or any run of characters (`.*`). */
type Token = { lit: string } | { any: true } | { star: true };

export interface Matcher {
  label: string;
  op: Op;
  /** One list of tokens per `|` alternative; `=`/`!=` have one literal alternative. */
  alternatives: Token[][];
  /** As written: shown in status and reasons. */
  text: string;
}

const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]{0,199}$/;

function parsePattern(pattern: string): Token[][] | string {
  const alternatives: Token[][] = [[]];
  const chars = [...pattern];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    const current = alternatives[alternatives.length - 1]!;
    if (ch === '\\') {
      const next = chars[++i];
      if (next === undefined) return 'ends with a lone "\\"';
      if (/[a-zA-Z0-9]/.test(next)) return `"\\${next}" is not supported: escape only punctuation, e.g. "\\."`;
      current.push({ lit: next });
    } else if (ch === '|') {
      alternatives.push([]);
    } else if (ch === '.') {
      const quantifier = chars[i + 1];
      if (quantifier === '*' || quantifier === '+') {
        i++;
        if (quantifier === '+') current.push({ any: true });
        // Two stars in a row match what one does.
        if (!current.length || !('star' in current[current.length - 1]!)) current.push({ star: true });
      } else current.push({ any: true });
    } else if ('()[]{}*+?^$'.includes(ch)) {
      return `"${ch}" is not supported; use literals, ".", ".*", ".+" and "|" (e.g. "critical|page", "Canary.*")`;
    } else current.push({ lit: ch });
  }
  return alternatives;
}

/** A matcher, or why it is not one (in words, for a policy error that names the field). */
export function parseMatcher(text: string): Matcher | string {
  if (text.length > MATCHER_MAX_LENGTH) return `at most ${MATCHER_MAX_LENGTH} characters`;
  const match = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$/su.exec(text);
  if (!match) return 'expected label="value", label!="value", label=~"pattern" or label!~"pattern"';
  const [, label, op, quoted] = match as unknown as [string, string, Op, string];
  if (!LABEL.test(label)) return 'expected a Prometheus label name';
  // Inside the quotes, \" and \\ are the string's own escapes; what is left is the value or the pattern.
  const value = quoted.replace(/\\(["\\])/g, '$1');
  if (op === '=' || op === '!=') return { label, op, alternatives: [[...value].map((lit) => ({ lit }))], text };
  const alternatives = parsePattern(value);
  if (typeof alternatives === 'string') return `pattern ${JSON.stringify(value)}: ${alternatives}`;
  return { label, op, alternatives, text };
}

/**
 * Whether `value` is matched by one alternative, whole: the classic wildcard walk, which backs up at most to the
 * last star, so it is linear in practice and O(pattern × value) at worst.
 */
function matchesTokens(tokens: Token[], value: string[]): boolean {
  let t = 0;
  let v = 0;
  let starAt = -1;
  let resumeAt = 0;
  while (v < value.length) {
    const token = tokens[t];
    if (token && 'star' in token) {
      starAt = t++;
      resumeAt = v;
    } else if (token && ('any' in token || token.lit === value[v])) {
      t++;
      v++;
    } else if (starAt >= 0) {
      t = starAt + 1;
      v = ++resumeAt;
    } else return false;
  }
  while (t < tokens.length && 'star' in tokens[t]!) t++;
  return t === tokens.length;
}

/** A label an alert does not carry matches as the empty string, as in Alertmanager. */
export function matches(matcher: Matcher, labels: Readonly<Record<string, string>>): boolean {
  const value = [...(Object.hasOwn(labels, matcher.label) ? labels[matcher.label]! : '')];
  const hit = matcher.alternatives.some((tokens) => matchesTokens(tokens, value));
  return matcher.op === '=' || matcher.op === '=~' ? hit : !hit;
}
