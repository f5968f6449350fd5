/**
 * A small metrics registry that renders the Prometheus text exposition format (version 0.0.4):
 * counters, gauges and histograms with fixed label names, nothing else. No dependency, no global state —
 * `serve.ts` creates one registry per server instance.
 *
 * Format (https://prometheus.io/docs/instrumenting/exposition_formats/): per family one `# HELP` and one
 * `# TYPE` line, then its samples `name{label="value",…} number`. Label values escape `\`, `"` and newline;
 * HELP text escapes `\` and newline. A histogram renders cumulative `_bucket{le="…"}` samples ending with
 * `le="+Inf"` (= `_count`), then `_sum` and `_count`.
 *
 * Label cardinality is the caller's job: every distinct tuple of label values is a series kept for the life of the
 * process (gauges may `clear()`). Never use an unbounded value (a device uuid, a raw URL) as a label.
 */

/** `Content-Type` of the rendered text. */
export const EXPOSITION_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Escapes a label value: backslash, double quote and line feed. */
export function escapeLabelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\\' ? '\\\\' : c === '"' ? '\\"' : '\\n'));
}

/** Escapes HELP text: backslash and line feed. */
export function escapeHelp(text: string): string {
  return text.replace(/[\\\n]/g, (c) => (c === '\\' ? '\\\\' : '\\n'));
}

/** A sample value as the format writes it (`+Inf`, `-Inf`, `NaN` for the non-finite ones). */
export function formatValue(v: number): string {
  if (Number.isFinite(v)) return String(v);
  return Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf';
}

type MetricType = 'counter' | 'gauge' | 'histogram';

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly labelNames: readonly string[];
  init(values: readonly string[]): void;
  render(out: string[]): void;
}

/** `{a="x",b="y"}` for the given names and values, '' when there are none. */
function labelText(names: readonly string[], values: readonly string[], extra?: string): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i]!)}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** The series of one family, keyed by their label values. */
abstract class Series<C> implements Family {
  abstract readonly type: MetricType;
  protected readonly children = new Map<string, { values: readonly string[]; child: C }>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
  ) {}

  protected abstract create(): C;

  /** The series for these label values (one per label name, in order), created at zero on first use. */
  protected child(values: readonly string[]): C {
    if (values.length !== this.labelNames.length) {
      throw new Error(`metric ${this.name} takes ${this.labelNames.length} label value(s) (${this.labelNames.join(', ')}), got ${values.length}`);
    }
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let entry = this.children.get(key);
    if (entry === undefined) {
      entry = { values: [...values], child: this.create() };
      this.children.set(key, entry);
    }
    return entry.child;
  }

  /** Makes the series render (at zero) before its first use; label-less families are initialised at registration. */
  init(values: readonly string[]): void {
    this.child(values);
  }

  abstract render(out: string[]): void;
}

/** A handle on one counter series (cache it on hot paths: no label lookup per increment). */
export interface CounterChild {
  inc(by?: number): void;
  get(): number;
}

/** A monotonically increasing count since the process started (`_total` by convention). */
export class Counter extends Series<{ value: number }> {
  readonly type = 'counter';

  protected create(): { value: number } {
    return { value: 0 };
  }

  /** The series for these label values; creating it makes it render (at 0 until incremented). */
  labels(...values: string[]): CounterChild {
    const c = this.child(values);
    return {
      inc: (by = 1) => {
        if (!(by >= 0)) throw new Error(`counter ${this.name} can only go up (got ${by})`);
        c.value += by;
      },
      get: () => c.value,
    };
  }

  inc(values: readonly string[] = [], by = 1): void {
    if (!(by >= 0)) throw new Error(`counter ${this.name} can only go up (got ${by})`);
    this.child(values).value += by;
  }

  get(values: readonly string[] = []): number {
    return this.child(values).value;
  }

  render(out: string[]): void {
    for (const { values, child } of this.children.values()) out.push(`${this.name}${labelText(this.labelNames, values)} ${formatValue(child.value)}`);
  }
}

/** A value that goes up and down; scrape-time gauges are usually `clear()`ed and set again by a collector. */
export class Gauge extends Series<{ value: number }> {
  readonly type = 'gauge';

  protected create(): { value: number } {
    return { value: 0 };
  }

  set(values: readonly string[], value: number): void {
    this.child(values).value = value;
  }

  get(values: readonly string[] = []): number {
    return this.child(values).value;
  }

  /** Forgets every series (e.g. a broker that was deleted must not linger). */
  clear(): void {
    this.children.clear();
  }

  render(out: string[]): void {
    for (const { values, child } of this.children.values()) out.push(`${this.name}${labelText(this.labelNames, values)} ${formatValue(child.value)}`);
  }
}

interface HistogramState {
  /** Observations per bucket (not cumulative); the last slot is the +Inf overflow. */
  counts: number[];
  sum: number;
  count: number;
}

/** Observations counted into fixed buckets (upper bounds, `le`), with their sum and count. */
export class Histogram extends Series<HistogramState> {
  readonly type = 'histogram';
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    if (labelNames.includes('le')) throw new Error(`histogram ${name} may not use the label name "le"`);
    const sorted = [...buckets].filter((b) => b !== Infinity);
    if (sorted.length === 0 || sorted.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= sorted[i - 1]!))) {
      throw new Error(`histogram ${name} needs strictly increasing finite bucket bounds`);
    }
    this.buckets = sorted;
  }

  protected create(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  observe(values: readonly string[], v: number): void {
    if (Number.isNaN(v)) return; // a NaN would poison _sum for good
    const h = this.child(values);
    let i = 0;
    while (i < this.buckets.length && v > this.buckets[i]!) i++;
    h.counts[i]!++;
    h.sum += v;
    h.count++;
  }

  /** `{count, sum}` of one series (tests, benchmarks). */
  get(values: readonly string[] = []): { count: number; sum: number } {
    const h = this.child(values);
    return { count: h.count, sum: h.sum };
  }

  render(out: string[]): void {
    for (const { values, child } of this.children.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += child.counts[i]!;
        out.push(`${this.name}_bucket${labelText(this.labelNames, values, `le="${formatValue(le)}"`)} ${cumulative}`);
      });
      out.push(`${this.name}_bucket${labelText(this.labelNames, values, 'le="+Inf"')} ${child.count}`);
      const labels = labelText(this.labelNames, values);
      out.push(`${this.name}_sum${labels} ${formatValue(child.sum)}`);
      out.push(`${this.name}_count${labels} ${child.count}`);
    }
  }
}

/** Runs before each render (scrape-time gauges); a rejection is the collector's own to log — see `Registry.render`. */
export type Collector = () => void | Promise<void>;

export class Registry {
  readonly #families = new Map<string, Family>();
  readonly #collectors: Collector[] = [];

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  gauge(name: string, help: string, labelNames: readonly string[] = []): Gauge {
    return this.#add(new Gauge(name, help, labelNames));
  }

  histogram(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]): Histogram {
    return this.#add(new Histogram(name, help, labelNames, buckets));
  }

  /** Adds a function that refreshes gauges right before every render. Collectors run side by side. */
  collect(fn: Collector): void {
    this.#collectors.push(fn);
  }

  /**
   * Runs the collectors, then renders every family in registration order. A collector that rejects does not fail
   * the scrape: its error is passed to `onCollectorError` (default: rethrown) and the families render as they are.
   */
  async render(onCollectorError?: (err: unknown) => void): Promise<string> {
    const results = await Promise.allSettled(this.#collectors.map(async (fn) => fn()));
    for (const r of results) {
      if (r.status === 'rejected') {
        if (onCollectorError) onCollectorError(r.reason);
        else throw r.reason;
      }
    }
    const out: string[] = [];
    for (const f of this.#families.values()) {
      out.push(`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`);
      f.render(out);
    }
    out.push('');
    return out.join('\n');
  }

  #add<F extends Family>(family: F): F {
    if (!METRIC_NAME_RE.test(family.name)) throw new Error(`invalid metric name ${JSON.stringify(family.name)}`);
    for (const l of family.labelNames) {
      if (!LABEL_NAME_RE.test(l) || l.startsWith('__')) throw new Error(`metric ${family.name}: invalid label name ${JSON.stringify(l)}`);
    }
    if (new Set(family.labelNames).size !== family.labelNames.length) throw new Error(`metric ${family.name}: a label name appears twice`);
    if (this.#families.has(family.name)) throw new Error(`metric ${family.name} is registered twice`);
    this.#families.set(family.name, family);
    if (family.labelNames.length === 0) family.init([]);
    return family;
  }
}
