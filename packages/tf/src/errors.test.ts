import { describe, expect, it } from 'vitest';
import { configChecks } from './config-checks.js';
import { ConfigFieldError, InputShapeError, describeValue } from './errors.js';

class DemoConfigError extends ConfigFieldError {
  override readonly name = 'DemoConfigError';
  constructor(field: string, expected: string, received: unknown) {
    super('demo', field, expected, received);
  }
}

const c = configChecks((f, e, r) => new DemoConfigError(f, e, r));

/** The error `fn` throws (fails the test when it returns). */
function thrown(fn: () => unknown): DemoConfigError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(DemoConfigError);
    return e as DemoConfigError;
  }
  throw new Error('expected a DemoConfigError');
}

describe('describeValue', () => {
  it('quotes strings, names undefined, writes the rest as JSON or String', () => {
    expect(describeValue('x')).toBe("'x'");
    expect(describeValue(undefined)).toBe('undefined');
    expect(describeValue([1, 2])).toBe('[1,2]');
    expect(describeValue({ a: null })).toBe('{"a":null}');
    expect(describeValue(10n)).toBe('10');
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(describeValue(cyclic)).toBe('[object Object]');
    expect(describeValue(() => 1)).toBe('() => 1');
  });
});

describe('ConfigFieldError / InputShapeError', () => {
  it('subclasses keep their name, fields, cause and the shared message format', () => {
    const cause = new Error('inner');
    const e = new ConfigFieldError('demo', 'cell', 'an integer >= 1', 'two', { cause });
    expect(e.message).toBe("demo config: 'cell' must be an integer >= 1; got 'two'");
    expect([e.name, e.scope, e.field, e.expected, e.received, e.cause]).toEqual([
      'ConfigFieldError',
      'demo',
      'cell',
      'an integer >= 1',
      'two',
      cause,
    ]);
    const d = new DemoConfigError('d', 'true or false', 3);
    expect(d).toBeInstanceOf(ConfigFieldError);
    expect(d).toBeInstanceOf(Error);
    expect(d.name).toBe('DemoConfigError');
    expect(String(d)).toBe("DemoConfigError: demo config: 'd' must be true or false; got 3");
    const i = new InputShapeError('demo', 'tokens', '[B, N, 8]', '[2, 3, 4]');
    expect(i.message).toBe("demo input 'tokens': expected [B, N, 8], got [2, 3, 4]");
    expect([i.name, i.scope, i.input, i.expected, i.received]).toEqual(['InputShapeError', 'demo', 'tokens', '[B, N, 8]', '[2, 3, 4]']);
  });
});

describe('configChecks', () => {
  it('int / finite / above / bool / oneOf accept good values and name the field of a bad one', () => {
    expect(c.int('n', 0, 0)).toBe(0);
    expect(thrown(() => c.int('n', 1.5, 0)).message).toBe("demo config: 'n' must be an integer >= 0; got 1.5");
    expect(thrown(() => c.int('n', 0, 1)).expected).toBe('an integer >= 1');
    expect(thrown(() => c.int('n', '3', 1)).received).toBe('3');
    expect(c.finite('g', -2.5)).toBe(-2.5);
    expect(thrown(() => c.finite('g', Infinity)).expected).toBe('a finite number');
    expect(thrown(() => c.finite('g', -1, 0)).expected).toBe('a finite number >= 0');
    expect(c.finite('g', 0, 0)).toBe(0);
    expect(c.above('e', 1e-9)).toBe(1e-9);
    expect(thrown(() => c.above('e', 0)).expected).toBe('a finite number > 0');
    expect(thrown(() => c.above('e', NaN)).field).toBe('e');
    expect(thrown(() => c.above('base', 1, 1)).expected).toBe('a finite number > 1');
    expect(c.bool('b', false)).toBe(false);
    expect(thrown(() => c.bool('b', 0)).expected).toBe('true or false');
    expect(c.oneOf('m', 'gelu', ['silu', 'gelu'] as const)).toBe('gelu');
    expect(thrown(() => c.oneOf('m', 'tanh', ['silu', 'gelu'])).message).toBe(
      "demo config: 'm' must be one of 'silu', 'gelu'; got 'tanh'",
    );
  });

  it('triple broadcasts a number, checks each entry by index, and spells the array form', () => {
    const pos = (f: string, v: unknown): number => c.int(f, v, 1);
    expect(c.triple('cell', 4, pos)).toEqual([4, 4, 4]);
    expect(c.triple('cell', [1, 2, 3], pos)).toEqual([1, 2, 3]);
    expect(thrown(() => c.triple('cell', [1, 0, 3], pos)).field).toBe('cell[1]');
    expect(thrown(() => c.triple('cell', 0, pos)).field).toBe('cell');
    expect(thrown(() => c.triple('cell', [1, 2], pos)).expected).toBe('a number or [z, y, x]');
    expect(thrown(() => c.triple('cell', 'x', pos, '[cz, cy, cx]')).expected).toBe('a number or [cz, cy, cx]');
  });

  it('merge lays defined fields over the defaults and rejects non-objects and unknown keys', () => {
    const defaults = Object.freeze({ a: 1, b: true });
    expect(c.merge(defaults, { a: 2, b: undefined })).toEqual({ a: 2, b: true });
    expect(c.merge(defaults, {})).toEqual({ a: 1, b: true });
    const e = thrown(() => c.merge(defaults, { a: 2, z: 1 }));
    expect([e.field, e.expected, e.received]).toEqual(['z', 'a known key (a, b)', 'z']);
    expect(thrown(() => c.merge(defaults, [1])).field).toBe('(config)');
    expect(thrown(() => c.merge(defaults, null)).expected).toBe('an object');
  });
});
