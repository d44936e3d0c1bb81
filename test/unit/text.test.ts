import { oneLine, progressBar } from '../../src/domain/text';

describe('progressBar', () => {
  it('fills the share of its width, rounded, clamped to 0..1', () => {
    expect(progressBar(0.5, 10)).toBe('█████░░░░░');
    expect(progressBar(0.26, 10)).toBe('███░░░░░░░');
    expect(progressBar(-1, 4)).toBe('░░░░');
    expect(progressBar(3, 4)).toBe('████');
  });

  it('draws with the glyphs it is given', () => {
    expect(progressBar(0.5, 4, { filled: '#', empty: '.' })).toBe('##..');
  });
});

describe('oneLine', () => {
  it('flattens whitespace runs and line breaks, escapes controls and cuts', () => {
    expect(oneLine('  a\r\n\tb  ', 100)).toBe('a b');
    expect(oneLine('\u001b[2Jx', 100)).toBe('\\u{001b}[2Jx');
    expect(oneLine('abcdef', 3)).toBe('abc…');
  });
});
