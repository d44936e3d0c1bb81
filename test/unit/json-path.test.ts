import fc from 'fast-check';
import {
  formatJsonPath,
  JsonPathError,
  parseJsonPath,
  selectJsonPath,
  whyNothingSelected,
  type PathSegment,
} from '../../src/domain/json-path';

const RUNS = { numRuns: 300, seed: 20261202 };
const select = (path: string, doc: unknown) => selectJsonPath(parseJsonPath(path), doc).values;

describe('parseJsonPath', () => {
  it.each<[string, PathSegment[]]>([
    ['$', []],
    ['$.data.value', [m('data'), m('value')]],
    ["$['a b']", [m('a b')]],
    ['$["it\'s"]', [m("it's")]],
    ["$['q\\'\\u0041\\n']", [m("q'A\n")]],
    ['$.series[0].points[-1]', [m('series'), i(0), m('points'), i(-1)]],
    ['$.series[*].value', [m('series'), w(), m('value')]],
    ['$.*', [w()]],
    ['$[ 2 ][ "x" ][ * ]', [i(2), m('x'), w()]],
    ['$.p99-latency._x.ünï', [m('p99-latency'), m('_x'), m('ünï')]],
  ])('%s', (source, segments) => {
    expect(parseJsonPath(source).segments).toEqual(segments);
  });

  it.each([
    ['', 0, /expected "\$"/],
    ['data.value', 0, /expected "\$"/],
    ['$..value', 1, /recursive descent/],
    ['$.data[?(@.x > 1)]', 7, /filters/],
    ['$[(1+1)]', 2, /script expressions/],
    ['$[0:2]', 3, /slices/],
    ['$[:2]', 2, /slices/],
    ['$[0,1]', 3, /unions/],
    ['$.', 2, /expected a name/],
    ['$.0', 2, /\[n\] for an array index/],
    ['$[01]', 2, /leading zeros/],
    ['$[-]', 3, /digits after "-"/],
    ['$[-0]', 2, /-0 is not an index/],
    ['$[99999999999999999999]', 2, /out of range/],
    ["$['abc", 2, /unterminated/],
    ["$['a\\x']", 4, /unknown escape/],
    ["$['a\\u12']", 4, /four hex digits/],
    ['$[1', 3, /expected "]"/],
    ['$ .a', 1, /unexpected " "/],
    ['$x', 1, /unexpected "x"/],
    ['$[x]', 2, /a quoted name, an index or "\*"/],
  ])('refuses %j at character %d', (source, position, why) => {
    let error: unknown;
    try {
      parseJsonPath(source);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(JsonPathError);
    expect((error as JsonPathError).position).toBe(position);
    expect((error as JsonPathError).message).toMatch(why);
    expect((error as JsonPathError).message).toContain(`at character ${position + 1}`);
  });

  it('refuses a path past its length bound rather than parse it', () => {
    expect(() => parseJsonPath(`$${'.a'.repeat(501)}`)).toThrow(/longer than 1000 characters/);
  });

  it('never throws anything but a JsonPathError, on any text', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `$${s}`),
          fc.string({ unit: 'binary' }),
        ),
        (text) => {
          try {
            parseJsonPath(text);
          } catch (err) {
            expect(err).toBeInstanceOf(JsonPathError);
          }
        },
      ),
      RUNS,
    );
  });
});

describe('selectJsonPath', () => {
  const doc = {
    data: { value: 0.02, list: [1, 2, 3], 'a b': 'x' },
    series: [{ value: 1 }, { value: '2.5' }, { other: 3 }],
  };

  it('selects members, indices (negative from the end) and wildcards in document order', () => {
    expect(select('$', doc)).toEqual([doc]);
    expect(select('$.data.value', doc)).toEqual([0.02]);
    expect(select("$.data['a b']", doc)).toEqual(['x']);
    expect(select('$.data.list[-1]', doc)).toEqual([3]);
    expect(select('$.data.list[3]', doc)).toEqual([]);
    expect(select('$.data.list[-4]', doc)).toEqual([]);
    expect(select('$.series[*].value', doc)).toEqual([1, '2.5']);
    expect(select('$.data.*', doc)).toEqual([0.02, [1, 2, 3], 'x']);
  });

  it('finds only own members: nothing of the prototype', () => {
    expect(select('$.constructor', {})).toEqual([]);
    expect(select('$.__proto__', {})).toEqual([]);
    expect(select('$.length', [1, 2])).toEqual([]);
    expect(select('$.__proto__', JSON.parse('{"__proto__": 7}'))).toEqual([7]);
  });

  it('selects nothing through scalars and the wrong container', () => {
    expect(select('$.a.b', { a: 5 })).toEqual([]);
    expect(select('$[0]', { 0: 'x' })).toEqual([]);
    expect(select("$['0']", ['x'])).toEqual([]);
    expect(select('$[*]', 'text')).toEqual([]);
  });

  it('stops at its bound on a response built to multiply the work', () => {
    const wide = Array.from({ length: 300 }, () => Array.from({ length: 300 }, () => [1, 2, 3]));
    const started = Date.now();
    const selection = selectJsonPath(parseJsonPath('$[*][*][*]'), wide, { maxValues: 1_000 });
    expect(selection.truncated).toBe(true);
    expect(selection.values).toHaveLength(1_000);
    expect(Date.now() - started).toBeLessThan(1_000);
  });

  it('costs nothing for the depth of a document it does not walk', () => {
    let deep: unknown = 42;
    for (let n = 0; n < 200_000; n++) deep = [deep];
    expect(select('$[0][0][0]', deep)).toHaveLength(1);
    expect(select('$[*]', deep)).toHaveLength(1);
  });

  it('says where a definite path found nothing', () => {
    const why = (path: string, d: unknown) => whyNothingSelected(parseJsonPath(path), d);
    expect(why('$.data.value', doc)).toBeUndefined();
    expect(why('$.data.missing', doc)).toBe('no member "missing" in the object at $.data');
    expect(why('$.data.value.x', doc)).toBe('$.data.value is a number, not an object');
    expect(why('$.series[7]', doc)).toBe('index 7 is outside the array at $.series (3 items)');
    expect(why('$.data[0]', doc)).toBe('$.data is an object, not an array');
    expect(why('$.series[*]', doc)).toBeUndefined();
  });

  it('never throws, on any JSON value and any path', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.array(segment(), { maxLength: 6 }), (value, segments) => {
        const path = parseJsonPath(formatJsonPath(segments));
        const selection = selectJsonPath(path, value);
        expect(Array.isArray(selection.values)).toBe(true);
        if (path.definite) expect(selection.values.length).toBeLessThanOrEqual(1);
        whyNothingSelected(path, value);
      }),
      RUNS,
    );
  });

  it('finds, by a path built from its own keys, every value inside a document', () => {
    fc.assert(
      fc.property(
        fc.jsonValue().chain((value) => fc.tuple(fc.constant(value), walk(value))),
        ([value, { segments, found }]) => {
          const path = parseJsonPath(formatJsonPath(segments));
          expect(path.segments).toEqual(segments);
          const selection = selectJsonPath(path, value);
          expect(selection.values).toHaveLength(1);
          expect(Object.is(selection.values[0], found)).toBe(true);
          expect(whyNothingSelected(path, value)).toBeUndefined();
        },
      ),
      RUNS,
    );
  });

  it('formats paths that parse back to the same segments, whatever the keys hold', () => {
    fc.assert(
      fc.property(fc.array(segment(), { maxLength: 8 }), (segments) => {
        expect(parseJsonPath(formatJsonPath(segments)).segments).toEqual(segments);
      }),
      RUNS,
    );
  });
});

function m(name: string): PathSegment {
  return { kind: 'member', name };
}
function i(index: number): PathSegment {
  return { kind: 'index', index };
}
function w(): PathSegment {
  return { kind: 'wildcard' };
}

function segment(): fc.Arbitrary<PathSegment> {
  return fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 8 }).map(m),
    fc.string({ unit: 'binary', maxLength: 8 }).map(m),
    fc.integer({ min: -20, max: 20 }).map(i),
    fc.constant(w()),
  );
}

/**
 * A random walk from the root of `value` to one of the values inside it, by its own keys and indices (each index
 * written from the start or from the end: [i] and [i - length] name the same element).
 */
function walk(value: unknown): fc.Arbitrary<{ segments: PathSegment[]; found: unknown }> {
  const steps: fc.Arbitrary<number[]> = fc.array(fc.nat(), { maxLength: 8 });
  return fc.tuple(steps, fc.array(fc.boolean(), { minLength: 8, maxLength: 8 })).map(([choices, fromEnd]) => {
    const segments: PathSegment[] = [];
    let at = value;
    for (const [n, choice] of choices.entries()) {
      if (Array.isArray(at) && at.length > 0) {
        const index = choice % at.length;
        segments.push(i(fromEnd[n] ? index - at.length : index));
        at = at[index] as unknown;
      } else if (typeof at === 'object' && at !== null && Object.keys(at).length > 0) {
        const keys = Object.keys(at);
        const key = keys[choice % keys.length]!;
        segments.push(m(key));
        at = Object.getOwnPropertyDescriptor(at, key)?.value as unknown;
      } else break;
    }
    return { segments, found: at };
  });
}
