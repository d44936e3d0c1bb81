/**
 * The JSONPath a web check picks its value with: a small subset of RFC 9535 that needs no evaluator, so a policy can
 * never run code and a response can never make selection do more work than its own size. Parsed once where the
 * policy is written (errors name the character), then applied to whatever a user's metrics API answers.
 *
 *     $                the whole document
 *     .name  ['name']  a member of an object ("name" in double quotes too; JSON string escapes)
 *     [2]  [-1]        an element of an array, counted from the end when negative
 *     [*]  .*          every element of an array, every member value of an object
 *
 * Recursive descent (`..`), filters (`[?…]`), scripts (`[(…)]`), slices and unions are refused by name: each is a
 * way to select more than the user meant, or to run an expression, and a metric needs none of them.
 */

export type PathSegment = { kind: 'member'; name: string } | { kind: 'index'; index: number } | { kind: 'wildcard' };

export interface JsonPath {
  readonly source: string;
  readonly segments: readonly PathSegment[];
  /** No wildcard: the path selects at most one value. */
  readonly definite: boolean;
}

export const JSON_PATH_MAX_LENGTH = 1000;

/** A path that cannot be parsed: `position` is the 0-based offset of the offending character. */
export class JsonPathError extends Error {
  override readonly name = 'JsonPathError';
  constructor(
    readonly position: number,
    readonly why: string,
  ) {
    super(`${why} (at character ${position + 1})`);
  }
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
/** RFC 9535's member-name-shorthand, plus "-" after the first character (keys such as `p99-latency`). */
const isNameStart = (cp: number) =>
  (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a) || cp === 0x5f || (cp >= 0x80 && !isSurrogate(cp));
const isNameChar = (cp: number) => isNameStart(cp) || (cp >= 0x30 && cp <= 0x39) || cp === 0x2d;
const isSurrogate = (cp: number) => cp >= 0xd800 && cp <= 0xdfff;

const ESCAPES: Record<string, string> = {
  '"': '"',
  "'": "'",
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** Parses `source`, or throws a JsonPathError saying what is wrong and where. */
export function parseJsonPath(source: string): JsonPath {
  if (source.length > JSON_PATH_MAX_LENGTH) {
    throw new JsonPathError(JSON_PATH_MAX_LENGTH, `longer than ${JSON_PATH_MAX_LENGTH} characters`);
  }
  if (source[0] !== '$') throw new JsonPathError(0, 'expected "$" (the document) at the start, e.g. $.data.value');
  const segments: PathSegment[] = [];
  let i = 1;
  const skipSpaces = () => {
    while (source[i] === ' ') i++;
  };
  const closeBracket = (what: string) => {
    skipSpaces();
    if (source[i] === ',') throw new JsonPathError(i, 'unions ([a,b]) are not supported: one value per check');
    if (source[i] === ':') throw new JsonPathError(i, 'slices ([a:b]) are not supported: use [*]');
    if (source[i] !== ']') throw new JsonPathError(i, `expected "]" after ${what}`);
    i++;
  };

  while (i < source.length) {
    const c = source[i];
    if (c === '.') {
      i++;
      if (source[i] === '.') throw new JsonPathError(i - 1, 'recursive descent ("..") is not supported');
      if (source[i] === '*') {
        segments.push({ kind: 'wildcard' });
        i++;
        continue;
      }
      const start = i;
      const first = source.codePointAt(i);
      if (first === undefined || !isNameStart(first)) {
        const hint = isDigit(source[i]) ? ': write [n] for an array index' : ": write ['…'] for any other key";
        throw new JsonPathError(start, `expected a name or "*" after "."${hint}`);
      }
      for (let cp = source.codePointAt(i); cp !== undefined && isNameChar(cp); cp = source.codePointAt(i)) {
        i += cp > 0xffff ? 2 : 1;
      }
      segments.push({ kind: 'member', name: source.slice(start, i) });
    } else if (c === '[') {
      i++;
      skipSpaces();
      const d = source[i];
      if (d === '*') {
        i++;
        closeBracket('"*"');
        segments.push({ kind: 'wildcard' });
      } else if (d === "'" || d === '"') {
        const { value, end } = parseString(source, i);
        i = end;
        closeBracket('a quoted name');
        segments.push({ kind: 'member', name: value });
      } else if (d === '-' || isDigit(d)) {
        const { value, end } = parseIndex(source, i);
        i = end;
        closeBracket('an index');
        segments.push({ kind: 'index', index: value });
      } else if (d === '?') {
        throw new JsonPathError(i, 'filters ([?…]) are not supported');
      } else if (d === '(') {
        throw new JsonPathError(i, 'script expressions ([(…)]) are not supported');
      } else if (d === ':') {
        throw new JsonPathError(i, 'slices ([a:b]) are not supported: use [*]');
      } else {
        throw new JsonPathError(i, `expected a quoted name, an index or "*" after "["`);
      }
    } else {
      throw new JsonPathError(i, `unexpected ${JSON.stringify(c)}: expected "." or "["`);
    }
  }
  return { source, segments, definite: segments.every((s) => s.kind !== 'wildcard') };
}

/** `parseJsonPath` without the throw: the error message, or undefined when the path is good. */
export function jsonPathProblem(source: string): string | undefined {
  try {
    parseJsonPath(source);
    return undefined;
  } catch (err) {
    return (err as JsonPathError).message;
  }
}

function parseString(source: string, open: number): { value: string; end: number } {
  const quote = source[open]!;
  let value = '';
  let i = open + 1;
  for (;;) {
    const c = source[i];
    if (c === undefined) throw new JsonPathError(open, 'unterminated quoted name');
    if (c === quote) return { value, end: i + 1 };
    if (c < ' ') throw new JsonPathError(i, 'control character in a quoted name: escape it, e.g. \\n');
    if (c !== '\\') {
      value += c;
      i++;
      continue;
    }
    const e = source[i + 1];
    if (e === 'u') {
      const hex = source.slice(i + 2, i + 6);
      if (!/^[0-9A-Fa-f]{4}$/.test(hex)) throw new JsonPathError(i, 'expected four hex digits after \\u');
      value += String.fromCharCode(parseInt(hex, 16));
      i += 6;
    } else if (e !== undefined && Object.hasOwn(ESCAPES, e)) {
      value += ESCAPES[e];
      i += 2;
    } else {
      throw new JsonPathError(i, `unknown escape "\\${e ?? ''}" in a quoted name`);
    }
  }
}

function parseIndex(source: string, start: number): { value: number; end: number } {
  let i = start;
  if (source[i] === '-') i++;
  const digits = i;
  while (isDigit(source[i])) i++;
  const text = source.slice(digits, i);
  if (text.length === 0) throw new JsonPathError(digits, 'expected digits after "-"');
  if (text.length > 1 && text[0] === '0') throw new JsonPathError(digits, 'an index has no leading zeros');
  const value = Number(source.slice(start, i));
  if (!Number.isSafeInteger(value)) throw new JsonPathError(start, 'index out of range');
  if (Object.is(value, -0)) throw new JsonPathError(start, '-0 is not an index: write [0]');
  return { value, end: i };
}

/** The canonical text of a path (member shorthand where it parses back, else `["…"]`): for messages and tests. */
export function formatJsonPath(segments: readonly PathSegment[]): string {
  let out = '$';
  for (const s of segments) {
    if (s.kind === 'wildcard') out += '[*]';
    else if (s.kind === 'index') out += `[${s.index}]`;
    else out += isShorthand(s.name) ? `.${s.name}` : `[${JSON.stringify(s.name)}]`;
  }
  return out;
}

function isShorthand(name: string): boolean {
  const first = name.codePointAt(0);
  if (first === undefined || !isNameStart(first)) return false;
  for (const ch of name) if (!isNameChar(ch.codePointAt(0)!)) return false;
  return true;
}

export interface SelectLimits {
  /** Values kept after any one segment; past it the selection stops, truncated. */
  maxValues?: number;
}

export interface Selection {
  values: unknown[];
  /** `maxValues` was reached: `values` is only part of what the path selects. */
  truncated: boolean;
}

const DEFAULT_MAX_VALUES = 10_000;

/**
 * What `path` selects in `document`, in document order. One pass per segment over the values the previous one
 * kept, never recursion into the document, so its depth costs nothing and the work is at most segments × maxValues.
 * Only own members count: `$.constructor` or `$.__proto__` find nothing unless the document has that key.
 */
export function selectJsonPath(path: JsonPath, document: unknown, limits: SelectLimits = {}): Selection {
  const maxValues = limits.maxValues ?? DEFAULT_MAX_VALUES;
  let current: unknown[] = [document];
  for (const segment of path.segments) {
    const next: unknown[] = [];
    for (const value of current) {
      for (const child of children(segment, value)) {
        if (next.length >= maxValues) return { values: next, truncated: true };
        next.push(child);
      }
    }
    current = next;
  }
  return { values: current, truncated: false };
}

function* children(segment: PathSegment, value: unknown): Generator<unknown> {
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    if (segment.kind === 'wildcard') yield* value as unknown[];
    else if (segment.kind === 'index') {
      const at = segment.index < 0 ? value.length + segment.index : segment.index;
      if (at >= 0 && at < value.length) yield value[at] as unknown;
    }
    return;
  }
  if (segment.kind === 'wildcard') {
    for (const key of Object.keys(value)) yield ownValue(value, key);
  } else if (segment.kind === 'member' && Object.hasOwn(value, segment.name)) {
    yield ownValue(value, segment.name);
  }
}

const ownValue = (object: object, key: string): unknown => Object.getOwnPropertyDescriptor(object, key)?.value;

/**
 * Why a definite path selects nothing in `document`, as a person would look for it: the first step that finds
 * nothing, and what is there instead. Undefined when the path does select a value (or is not definite).
 */
export function whyNothingSelected(path: JsonPath, document: unknown): string | undefined {
  if (!path.definite) return undefined;
  let value = document;
  for (const [n, segment] of path.segments.entries()) {
    const where = formatJsonPath(path.segments.slice(0, n));
    const found = [...children(segment, value)];
    if (found.length === 0) {
      if (segment.kind === 'member') {
        return isObject(value)
          ? `no member ${JSON.stringify(segment.name)} in the object at ${where}`
          : `${where} is ${describe(value)}, not an object`;
      }
      if (segment.kind === 'index') {
        return Array.isArray(value)
          ? `index ${segment.index} is outside the array at ${where} (${value.length} items)`
          : `${where} is ${describe(value)}, not an array`;
      }
    }
    value = found[0];
  }
  return undefined;
}

const isObject = (v: unknown): v is object => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A value's kind, for messages: never the value itself, which could be anything a server sent. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array (${value.length} items)`;
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return 'a string';
  if (typeof value === 'number') return 'a number';
  if (typeof value === 'boolean') return 'a boolean';
  return typeof value;
}
