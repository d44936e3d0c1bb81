import { z } from 'zod';

/**
 * Text people send (names, reasons) and text we show them. Two rules: refuse at the input edge what nobody needs
 * (control characters, invisible characters in a name), and pass everything shown through `printable`, which also
 * covers text that never went through our schemas (terminate reasons, search attributes, old histories).
 */

/**
 * What a terminal or a log viewer may act on, or what hides text: C0/C1 controls (ESC starts CSI and OSC
 * sequences; a CR or LF forges a line), bidirectional embeddings, overrides and isolates (reorder what is shown),
 * line and paragraph separators.
 */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;
/** UNSAFE, but a line feed: for text whose lines are our own. */
const UNSAFE_BUT_LINE_BREAKS =
  // eslint-disable-next-line no-control-regex
  /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;
/** UNSAFE for a yes-or-no test: not global, so it keeps no position between calls. */
const UNSAFE_ANY = new RegExp(UNSAFE.source, 'u');
/** What JSON.stringify leaves raw of UNSAFE (it escapes C0 controls itself; its own line breaks must stay). */
const UNSAFE_AFTER_JSON = /[\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]/gu;
/** Characters that render as nothing (zero-width space, joiners, soft hyphen, Hangul fillers, tags...). */
const INVISIBLE = /[\p{Default_Ignorable_Code_Point}\p{Cf}\p{Co}\p{Cn}\p{Zl}\p{Zp}]/u;
/** Any space other than U+0020: a no-break or ideographic space makes two names look alike. */
const ODD_SPACE = /[^\S ]/u;

const escape = (ch: string) => `\\u{${ch.codePointAt(0)!.toString(16).padStart(4, '0')}}`;

/**
 * The one sanitiser for every string from a release that reaches a terminal, a log line or the Web UI: unsafe
 * characters become visible escapes (`\u{001b}`), so nothing is hidden and nothing is acted on; long text is cut.
 */
export function printable(text: string, max = 2000): string {
  const shown = text.replace(UNSAFE, escape);
  return shown.length > max ? `${shown.slice(0, max)}…` : shown;
}

/** Whitespace runs, line breaks included, flattened to one space, then `printable`: one line of at most `max`. */
export const oneLine = (text: string, max: number): string => printable(text.replace(/\s+/g, ' ').trim(), max);

/** Multi-line output of our own (a rendered view, a stack trace): printable, the line breaks kept. One pass. */
export const printableLines = (text: string): string => text.replace(UNSAFE_BUT_LINE_BREAKS, escape);

/**
 * JSON for a terminal or a script: JSON.stringify escapes C0 controls but leaves C1 controls (U+009B is a CSI on
 * many terminals), bidi controls and line separators raw; those are escaped too, so the JSON means the same.
 */
export const printableJson = (value: unknown, indent?: number): string =>
  (JSON.stringify(value, null, indent) ?? 'null').replace(
    UNSAFE_AFTER_JSON,
    (ch) => `\\u${ch.codePointAt(0)!.toString(16).padStart(4, '0')}`,
  );

/** `printable` applied to every string inside a value (a status, a list of rows), keys included. */
export function printableDeep<T>(value: T): T {
  if (typeof value === 'string') return printable(value, 100_000) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => printableDeep(v)) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [printable(k, 200), printableDeep(v as unknown)]),
    ) as T;
  }
  return value;
}

/** `fraction` (clamped to 0..1) of `width` cells filled: the bake's progress in the CLI and the Web UI. */
export function progressBar(fraction: number, width: number, glyphs = { filled: '█', empty: '░' }): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `${glyphs.filled.repeat(filled)}${glyphs.empty.repeat(width - filled)}`;
}

/** Markdown for the Web UI: printable, and every character markdown acts on escaped (no links, images or HTML). */
export function markdownText(text: string, max = 2000): string {
  return printable(text, max).replace(/[\\`*_{}[\]()<>#+!|~&]/g, (ch) => `\\${ch}`);
}

export const hasUnsafeCharacters = (text: string) => UNSAFE_ANY.test(text);

/** Free text written by a person (a reason, a comment): one line, no control characters. */
export const freeText = (max: number) =>
  z
    .string()
    .trim()
    .max(max, `at most ${max} characters`)
    .refine((t) => !hasUnsafeCharacters(t), 'must not contain control, bidirectional or line-separator characters');

/**
 * A person's name as written in a control or a policy. Invisible characters are refused outright rather than
 * stripped: `alice\u200b` is not alice with a typo, it is someone pretending.
 */
export const personName = z
  .string()
  .trim()
  .min(1, 'must name a person')
  .max(128, 'at most 128 characters')
  .refine((t) => !hasUnsafeCharacters(t), 'must not contain control characters')
  .refine((t) => !INVISIBLE.test(t), 'must not contain invisible or formatting characters (zero-width, bidi...)')
  .refine((t) => !ODD_SPACE.test(t), 'must not contain spaces other than a plain space');

/**
 * A name that becomes part of an ID, a label, a query or a file name (a service, a check, a window): lower case,
 * nothing that would need escaping in any of them.
 */
export const lowerCaseName = (what: string) =>
  z
    .string()
    .regex(
      /^[a-z0-9][a-z0-9_.-]{0,62}$/,
      `expected a lower-case ${what}: letters, digits, "-", "_" or ".", at most 63 characters`,
    );

/**
 * A list of named items, none named twice: lists in policies are merged and compared by name, and two of one name
 * would let a merge keep either. Refused where they are written, naming the second.
 */
export const uniquelyNamed = <T extends z.ZodType<{ name: string }>>(item: T, what: string, max: number) =>
  z
    .array(item)
    .max(max)
    .superRefine((items, ctx) => {
      const seen = new Set<string>();
      for (const [i, { name }] of items.entries()) {
        if (seen.has(name))
          ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `duplicate ${what} name "${name}"` });
        seen.add(name);
      }
    });
