import type { z } from 'zod';
import { printable } from './text';

/**
 * Answers a z.ZodError with "field: message; field: message", naming each bad field. Messages may echo the input (a
 * bad duration, an unknown key): printable and cut, so the answer stays one line and shows what was sent.
 */
export function describeZodError(error: z.ZodError, root?: string): string {
  return error.issues
    .slice(0, 10)
    .map((issue) => {
      const path = [root, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${printable(path || '(input)', 200)}: ${printable(issue.message, 300)}`;
    })
    .join('; ');
}
