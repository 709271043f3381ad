// A small schema kit: one description gives the TypeScript type (Infer), the JSON Schema the
// README points editors at, and the validator the parser runs (every issue at once, each with
// its field path, unknown fields included).

export type PathSegment = string | number;

export interface Issue {
  path: PathSegment[];
  message: string;
  /** The issue is about the key `path[-1]` itself (unknown field), not its value. */
  atKey?: boolean;
}

export type JsonSchema = Record<string, unknown>;

export interface Schema<T, Optional extends boolean = false> {
  readonly optional: Optional;
  readonly description?: string | undefined;
  /** Marker for type inference only. */
  readonly _type?: T;
  toJsonSchema(): JsonSchema;
  /** Validate; push issues; return the value (typed) when no issue was found at or below. */
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined;
}

export type Infer<S> = S extends Schema<infer T, boolean> ? T : never;

type AnySchema = Schema<unknown, boolean>;
type Shape = Record<string, AnySchema>;
type OptionalKeys<S extends Shape> = {
  [K in keyof S]: S[K] extends Schema<unknown, true> ? K : never;
}[keyof S];
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>;
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type InferShape<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: Infer<S[K]> }
>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return String(value);
}

function withDescription(schema: JsonSchema, description: string | undefined): JsonSchema {
  return description ? { description, ...schema } : schema;
}

abstract class Base<T> implements Schema<T, false> {
  readonly optional = false as const;
  readonly _type?: T;
  description?: string | undefined;
  abstract toJsonSchema(): JsonSchema;
  abstract check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined;
  describe(text: string): this {
    this.description = text;
    return this;
  }
}

export interface StringOptions {
  pattern?: RegExp;
  /** Human name of the pattern for messages. */
  patternName?: string;
  minLength?: number;
  maxLength?: number;
  /** Extra semantic check: a message when the value is wrong. */
  refine?: (value: string) => string | undefined;
}

class StringSchema<T extends string = string> extends Base<T> {
  constructor(readonly options: StringOptions = {}) {
    super();
  }
  toJsonSchema(): JsonSchema {
    const o = this.options;
    return withDescription(
      {
        type: 'string',
        ...(o.minLength !== undefined ? { minLength: o.minLength } : {}),
        ...(o.maxLength !== undefined ? { maxLength: o.maxLength } : {}),
        ...(o.pattern ? { pattern: o.pattern.source } : {}),
      },
      this.description,
    );
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined {
    const o = this.options;
    if (typeof value !== 'string') {
      issues.push({ path, message: `expected a string, got ${describe(value)}` });
      return undefined;
    }
    const max = o.maxLength ?? 4096;
    if (value.length < (o.minLength ?? 0)) {
      issues.push({
        path,
        message: o.minLength === 1 ? 'must not be empty' : `expected at least ${o.minLength} characters`,
      });
      return undefined;
    }
    if (value.length > max) {
      issues.push({ path, message: `expected at most ${max} characters, got ${value.length}` });
      return undefined;
    }
    if (o.pattern && !o.pattern.test(value)) {
      issues.push({
        path,
        message: `expected ${o.patternName ?? `to match ${o.pattern.source}`}, got ${describe(value)}`,
      });
      return undefined;
    }
    const problem = o.refine?.(value);
    if (problem) {
      issues.push({ path, message: problem });
      return undefined;
    }
    return value as T;
  }
}

class IntegerSchema extends Base<number> {
  constructor(
    readonly min: number,
    readonly max: number,
  ) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription({ type: 'integer', minimum: this.min, maximum: this.max }, this.description);
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < this.min || value > this.max) {
      issues.push({ path, message: `expected ${this.min}-${this.max}, got ${describe(value)}` });
      return undefined;
    }
    return value;
  }
}

class BooleanSchema extends Base<boolean> {
  toJsonSchema(): JsonSchema {
    return withDescription({ type: 'boolean' }, this.description);
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): boolean | undefined {
    if (typeof value !== 'boolean') {
      issues.push({ path, message: `expected true or false, got ${describe(value)}` });
      return undefined;
    }
    return value;
  }
}

class EnumSchema<T extends string> extends Base<T> {
  constructor(readonly values: readonly T[]) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription(
      this.values.length === 1 ? { const: this.values[0] } : { enum: [...this.values] },
      this.description,
    );
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined {
    if (typeof value !== 'string' || !(this.values as readonly string[]).includes(value)) {
      issues.push({ path, message: `expected ${this.values.join(' | ')}, got ${describe(value)}` });
      return undefined;
    }
    return value as T;
  }
}

class ArraySchema<T> extends Base<T[]> {
  constructor(
    readonly item: Schema<T, boolean>,
    readonly options: { minItems?: number; maxItems?: number } = {},
  ) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription(
      {
        type: 'array',
        items: this.item.toJsonSchema(),
        ...(this.options.minItems !== undefined ? { minItems: this.options.minItems } : {}),
        ...(this.options.maxItems !== undefined ? { maxItems: this.options.maxItems } : {}),
      },
      this.description,
    );
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T[] | undefined {
    if (!Array.isArray(value)) {
      issues.push({ path, message: `expected a list, got ${describe(value)}` });
      return undefined;
    }
    const max = this.options.maxItems ?? 100_000;
    if (value.length < (this.options.minItems ?? 0)) {
      issues.push({ path, message: `expected at least ${this.options.minItems} item(s)` });
      return undefined;
    }
    if (value.length > max) {
      issues.push({ path, message: `expected at most ${max} items, got ${value.length}` });
      return undefined;
    }
    const before = issues.length;
    const out = value.map((item, i) => this.item.check(item, [...path, i], issues));
    return issues.length === before ? (out as T[]) : undefined;
  }
}

class ObjectSchema<S extends Shape> extends Base<InferShape<S>> {
  constructor(
    readonly shape: S,
    readonly options: { minProperties?: number; refine?: (value: InferShape<S>) => Issue[] } = {},
  ) {
    super();
  }
  toJsonSchema(): JsonSchema {
    const properties: Record<string, JsonSchema> = {};
    const required: string[] = [];
    for (const [key, schema] of Object.entries(this.shape)) {
      properties[key] = schema.toJsonSchema();
      if (!schema.optional) required.push(key);
    }
    return withDescription(
      {
        type: 'object',
        properties,
        ...(required.length ? { required } : {}),
        ...(this.options.minProperties !== undefined ? { minProperties: this.options.minProperties } : {}),
        additionalProperties: false,
      },
      this.description,
    );
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): InferShape<S> | undefined {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      issues.push({ path, message: `expected a mapping, got ${describe(value)}` });
      return undefined;
    }
    const before = issues.length;
    const record = value as Record<string, unknown>;
    const known = Object.keys(this.shape);
    for (const key of Object.keys(record)) {
      if (!Object.hasOwn(this.shape, key)) {
        const near = known.find((k) => k.toLowerCase() === key.toLowerCase() || editDistance(k, key) <= 2);
        issues.push({
          path: [...path, key],
          message: `unknown field${near ? ` (did you mean "${near}"?)` : `; expected one of ${known.join(', ')}`}`,
          atKey: true,
        });
      }
    }
    const out: Record<string, unknown> = {};
    for (const [key, schema] of Object.entries(this.shape)) {
      const member = Object.hasOwn(record, key) ? record[key] : undefined;
      if (member === undefined || member === null) {
        if (!schema.optional) issues.push({ path: [...path, key], message: 'required field is missing' });
        else if (member === null)
          issues.push({ path: [...path, key], message: 'must not be null (omit the field instead)' });
        continue;
      }
      out[key] = schema.check(member, [...path, key], issues);
    }
    if (this.options.minProperties !== undefined && Object.keys(record).length < this.options.minProperties)
      issues.push({ path, message: `expected at least ${this.options.minProperties} field(s)` });
    if (issues.length !== before) return undefined;
    const typed = out as InferShape<S>;
    if (this.options.refine) {
      const extra = this.options.refine(typed);
      for (const issue of extra) issues.push({ ...issue, path: [...path, ...issue.path] });
      if (extra.length) return undefined;
    }
    return typed;
  }
}

class RecordSchema<T> extends Base<Record<string, T>> {
  constructor(
    readonly value: Schema<T, boolean>,
    readonly keyPattern: RegExp,
    readonly keyName: string,
  ) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription(
      {
        type: 'object',
        propertyNames: { pattern: this.keyPattern.source },
        additionalProperties: this.value.toJsonSchema(),
      },
      this.description,
    );
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): Record<string, T> | undefined {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      issues.push({ path, message: `expected a mapping, got ${describe(value)}` });
      return undefined;
    }
    const before = issues.length;
    const out: Record<string, T> = {};
    for (const [key, member] of Object.entries(value)) {
      if (!this.keyPattern.test(key) || key === '__proto__') {
        issues.push({ path: [...path, key], message: `expected ${this.keyName} as key`, atKey: true });
        continue;
      }
      const checked = this.value.check(member, [...path, key], issues);
      if (checked !== undefined)
        Object.defineProperty(out, key, { value: checked, enumerable: true, writable: true });
    }
    return issues.length === before ? out : undefined;
  }
}

/** One of several shapes; the first whose JS type fits is used (string vs list vs mapping). */
class UnionSchema<T> extends Base<T> {
  constructor(readonly members: Schema<unknown, boolean>[]) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription({ anyOf: this.members.map((m) => m.toJsonSchema()) }, this.description);
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined {
    const attempts: Issue[][] = [];
    for (const member of this.members) {
      const local: Issue[] = [];
      const out = member.check(value, path, local);
      if (local.length === 0) return out as T;
      attempts.push(local);
    }
    // Report the attempt that got deepest (the author's likely intent).
    const best = attempts.reduce((a, b) =>
      Math.max(...b.map((i) => i.path.length)) > Math.max(...a.map((i) => i.path.length)) ? b : a,
    );
    const shallow = best.every((i) => i.path.length === path.length);
    if (shallow) {
      const expected = attempts
        .map((a) => a[0]?.message.replace(/, got .*$/, '').replace(/^expected /, ''))
        .join(' or ');
      issues.push({ path, message: `expected ${expected}, got ${describe(value)}` });
    } else issues.push(...best);
    return undefined;
  }
}

class OneOrManySchema<T> extends Base<T | T[]> {
  constructor(
    readonly item: Schema<T, boolean>,
    readonly list: ArraySchema<T>,
  ) {
    super();
  }
  toJsonSchema(): JsonSchema {
    return withDescription({ anyOf: [this.item.toJsonSchema(), this.list.toJsonSchema()] }, this.description);
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | T[] | undefined {
    return Array.isArray(value) ? this.list.check(value, path, issues) : this.item.check(value, path, issues);
  }
}

/** Any schema with a custom check (for values whose JSON shape is a union, such as ports). */
export function custom<T>(
  jsonSchema: JsonSchema,
  check: (value: unknown) => { ok: true; value: T } | { ok: false; message: string },
): Schema<T, false> {
  return {
    optional: false,
    toJsonSchema: () => jsonSchema,
    check(value, path, issues) {
      const result = check(value);
      if (result.ok) return result.value;
      issues.push({ path, message: result.message });
      return undefined;
    },
  };
}

class OptionalSchema<T> implements Schema<T, true> {
  readonly optional = true as const;
  readonly _type?: T;
  constructor(readonly inner: Schema<T, boolean>) {}
  get description() {
    return this.inner.description;
  }
  toJsonSchema(): JsonSchema {
    return this.inner.toJsonSchema();
  }
  check(value: unknown, path: PathSegment[], issues: Issue[]): T | undefined {
    return this.inner.check(value, path, issues);
  }
}

export function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let previous = row[0] as number;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const current = row[j] as number;
      row[j] = Math.min(
        (row[j] as number) + 1,
        (row[j - 1] as number) + 1,
        previous + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
      previous = current;
    }
  }
  return row[b.length] as number;
}

export const s = {
  string: <T extends string = string>(options?: StringOptions) => new StringSchema<T>(options),
  integer: (min: number, max: number) => new IntegerSchema(min, max),
  boolean: () => new BooleanSchema(),
  enum: <const T extends string>(values: readonly T[]) => new EnumSchema<T>(values),
  array: <T>(item: Schema<T, boolean>, options?: { minItems?: number; maxItems?: number }) =>
    new ArraySchema<T>(item, options),
  object: <S extends Shape>(
    shape: S,
    options?: { minProperties?: number; refine?: (value: InferShape<S>) => Issue[] },
  ) => new ObjectSchema<S>(shape, options),
  record: <T>(value: Schema<T, boolean>, keyPattern: RegExp, keyName: string) =>
    new RecordSchema<T>(value, keyPattern, keyName),
  union: <A, B>(a: Schema<A, boolean>, b: Schema<B, boolean>) => new UnionSchema<A | B>([a, b]),
  optional: <T>(schema: Schema<T, boolean>) => new OptionalSchema<T>(schema),
  /** A value or a list of values (a list is checked as a list, anything else as one value). */
  oneOrMany: <T>(item: Schema<T, boolean>, options?: { maxItems?: number }) =>
    new OneOrManySchema<T>(item, new ArraySchema<T>(item, { minItems: 1, ...options })),
};

export function asList<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
