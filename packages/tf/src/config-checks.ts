/**
 * The field validators every package's `resolveXConfig` is built from, parameterised by the package's
 * error factory so that each throws its own typed error (naming the field, what it must be and what
 * arrived) while the checks and their wording exist once.
 */

/** Builds the error a failed check throws, e.g. `(f, e, r) => new EncoderConfigError(f, e, r)`. */
export type ConfigErrorFactory = (field: string, expected: string, received: unknown) => Error;

/** Field checks bound to one package's error factory; each returns the value, narrowed, or throws. */
export interface ConfigChecks {
  /** An integer `>= min`. */
  int(field: string, v: unknown, min: number): number;
  /** A finite number `>= min` (any finite number when `min` is `-Infinity`, the default). */
  finite(field: string, v: unknown, min?: number): number;
  /** A finite number strictly greater than `bound` (default 0). */
  above(field: string, v: unknown, bound?: number): number;
  /** `true` or `false`. */
  bool(field: string, v: unknown): boolean;
  /** One of the listed strings. */
  oneOf<T extends string>(field: string, v: unknown, options: readonly T[]): T;
  /**
   * Three values in (z, y, x) order, each checked by `each` (named `field[0]` … `field[2]`); a single
   * number stands for all three. `form` is how the message spells the array form.
   */
  triple(
    field: string,
    v: unknown,
    each: (field: string, v: unknown) => number,
    form?: string,
  ): [number, number, number];
  /**
   * `defaults` with the defined fields of `partial` over them, after checking that `partial` is a plain
   * object whose keys all name a default.
   */
  merge(defaults: object, partial: unknown): Record<string, unknown>;
}

/** The shared field checks, throwing errors made by `fail`. */
export function configChecks(fail: ConfigErrorFactory): ConfigChecks {
  const checks: ConfigChecks = {
    int(field, v, min) {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw fail(field, `an integer >= ${min}`, v);
      return v;
    },
    finite(field, v, min = -Infinity) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
        throw fail(field, min === -Infinity ? 'a finite number' : `a finite number >= ${min}`, v);
      }
      return v;
    },
    above(field, v, bound = 0) {
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= bound) throw fail(field, `a finite number > ${bound}`, v);
      return v;
    },
    bool(field, v) {
      if (typeof v !== 'boolean') throw fail(field, 'true or false', v);
      return v;
    },
    oneOf<T extends string>(field: string, v: unknown, options: readonly T[]): T {
      if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
        throw fail(field, `one of ${options.map((o) => `'${o}'`).join(', ')}`, v);
      }
      return v as T;
    },
    triple(field, v, each, form = '[z, y, x]') {
      if (typeof v === 'number') {
        const n = each(field, v);
        return [n, n, n];
      }
      if (!Array.isArray(v) || v.length !== 3) throw fail(field, `a number or ${form}`, v);
      return [each(`${field}[0]`, v[0]), each(`${field}[1]`, v[1]), each(`${field}[2]`, v[2])];
    },
    merge(defaults, partial) {
      if (typeof partial !== 'object' || partial === null || Array.isArray(partial)) {
        throw fail('(config)', 'an object', partial);
      }
      for (const key of Object.keys(partial)) {
        if (!(key in defaults)) throw fail(key, `a known key (${Object.keys(defaults).join(', ')})`, key);
      }
      const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
      return { ...defaults, ...given } as Record<string, unknown>;
    },
  };
  return checks;
}
