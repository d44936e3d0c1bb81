import { identityKey, sameIdentity } from '../../src/domain/identity';

describe('identityKey', () => {
  it.each([
    ['alice', 'ALICE'],
    ['alice', 'Ａｌｉｃｅ'], // full-width
    ['alice', '\u0430lice'], // Cyrillic а
    ['alice', 'a1ice'],
    ['alice', 'aIice'], // a capital i
    ['ALICE', 'aIice'],
    ['bob', 'b0b'],
    ['bob', 'ｂ𝗈b'], // mathematical sans-serif o
    ['José', 'Jose\u0301'], // composed and decomposed
    ['paypal', 'pаypаl'],
  ])('treats %j and %j as one person', (a, b) => {
    expect(sameIdentity(a, b)).toBe(true);
  });

  it.each([
    ['alice', 'bob'],
    ['alice', 'alicia'],
    ['ann', 'anna'],
  ])('tells %j and %j apart', (a, b) => {
    expect(sameIdentity(a, b)).toBe(false);
  });

  it('is idempotent', () => {
    for (const name of ['Ａlice', 'b0b', 'Ĳssel', 'ǅemal', 'aIice', 'ӏ'])
      expect(identityKey(identityKey(name))).toBe(identityKey(name));
  });
});
