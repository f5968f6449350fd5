/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests: every line must be a HELP, a TYPE
 * or a sample; each family has one HELP and one TYPE before its samples, which are contiguous; no series twice;
 * histograms have cumulative `_bucket`s ending at `le="+Inf"` equal to `_count`, and a `_sum`. Throws with the
 * line number on the first violation.
 */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: string;
  help: string;
  samples: Sample[];
}

export interface Exposition {
  families: Map<string, Family>;
  /** The value of the series `name{labels}` (labels must match exactly), or undefined. */
  value(name: string, labels?: Record<string, string>): number | undefined;
  /** Sum over every series of `name` whose labels include `subset`. */
  sum(name: string, subset?: Record<string, string>): number;
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseValue(s: string, where: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${where}: bad value ${JSON.stringify(s)}`);
  return Number(s);
}

/** `a="x",b="y\"z"` → {a: 'x', b: 'y"z'}. */
function parseLabels(s: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < s.length) {
    const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(s.slice(i));
    if (!m) throw new Error(`${where}: bad label at ${JSON.stringify(s.slice(i))}`);
    const name = m[1]!;
    i += m[0].length;
    let value = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new Error(`${where}: unterminated label value of ${name}`);
      if (c === '"') break;
      if (c === '\\') {
        const e = s[i + 1];
        if (e === '\\') value += '\\';
        else if (e === '"') value += '"';
        else if (e === 'n') value += '\n';
        else throw new Error(`${where}: bad escape \\${e ?? ''} in label ${name}`);
        i += 2;
      } else {
        if (c === '\n') throw new Error(`${where}: raw newline in label ${name}`);
        value += c;
        i++;
      }
    }
    i++; // closing quote
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    labels[name] = value;
    if (s[i] === ',') i++;
    else if (i < s.length) throw new Error(`${where}: expected , after label ${name}`);
  }
  return labels;
}

function unescapeHelp(s: string, where: string): string {
  return s.replace(/\\(.?)/g, (_, e: string) => {
    if (e === '\\') return '\\';
    if (e === 'n') return '\n';
    throw new Error(`${where}: bad escape in HELP`);
  });
}

const key = (name: string, labels: Record<string, string>): string =>
  `${name}{${Object.keys(labels)
    .sort()
    .map((k) => `${k}=${JSON.stringify(labels[k])}`)
    .join(',')}}`;

export function parseExposition(text: string): Exposition {
  if (!text.endsWith('\n')) throw new Error('the exposition must end with a newline');
  const lines = text.slice(0, -1).split('\n');
  const families = new Map<string, Family>();
  const series = new Map<string, number>();
  const closed = new Set<string>();
  let current: Family | null = null;
  const familyOf = (name: string): Family | undefined => {
    const f = families.get(name);
    if (f && f.type !== 'histogram' && f.type !== 'summary') return f;
    for (const suffix of ['_bucket', '_sum', '_count']) {
      if (name.endsWith(suffix)) {
        const base = families.get(name.slice(0, -suffix.length));
        if (base && (base.type === 'histogram' || (base.type === 'summary' && suffix !== '_bucket'))) return base;
      }
    }
    return f;
  };
  lines.forEach((line, n) => {
    const where = `line ${n + 1}`;
    let m: RegExpExecArray | null;
    if ((m = new RegExp(`^# HELP (${NAME}) (.*)$`, 's').exec(line))) {
      const name = m[1]!;
      if (families.has(name)) throw new Error(`${where}: HELP of ${name} after its family started`);
      if (current) closed.add(current.name);
      current = { name, type: '', help: unescapeHelp(m[2]!, where), samples: [] };
      families.set(name, current);
    } else if ((m = new RegExp(`^# TYPE (${NAME}) (\\w+)$`).exec(line))) {
      const name = m[1]!;
      if (!TYPES.has(m[2]!)) throw new Error(`${where}: unknown type ${m[2]}`);
      if (current?.name !== name || current.type !== '' || current.samples.length > 0) throw new Error(`${where}: TYPE of ${name} must follow its HELP, once, before samples`);
      current.type = m[2]!;
    } else if (line.startsWith('#')) {
      throw new Error(`${where}: unexpected comment ${JSON.stringify(line)}`);
    } else if ((m = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`, 's').exec(line))) {
      const name = m[1]!;
      const family = familyOf(name);
      if (!family || family.type === '') throw new Error(`${where}: sample ${name} without HELP and TYPE`);
      if (family !== current || closed.has(family.name)) throw new Error(`${where}: samples of ${family.name} are not contiguous`);
      const labels = m[2] ? parseLabels(m[2], where) : {};
      const value = parseValue(m[3]!, where);
      const k = key(name, labels);
      if (series.has(k)) throw new Error(`${where}: series ${k} twice`);
      series.set(k, value);
      family.samples.push({ name, labels, value });
    } else {
      throw new Error(`${where}: not a HELP, TYPE or sample line: ${JSON.stringify(line)}`);
    }
  });
  for (const f of families.values()) {
    if (f.type === '') throw new Error(`family ${f.name} has no TYPE`);
    if (f.type === 'counter' && f.samples.some((s) => !(s.value >= 0))) throw new Error(`counter ${f.name} has a negative value`);
    if (f.type === 'histogram') checkHistogram(f);
  }
  return {
    families,
    value: (name, labels = {}) => series.get(key(name, labels)),
    sum(name, subset = {}) {
      const f = familyOf(name);
      let total = 0;
      for (const s of f?.samples ?? []) {
        if (s.name === name && Object.entries(subset).every(([k, v]) => s.labels[k] === v)) total += s.value;
      }
      return total;
    },
  };
}

function checkHistogram(f: Family): void {
  const groups = new Map<string, { buckets: Array<{ le: number; value: number }>; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const k = key('', rest);
    const g = groups.get(k) ?? { buckets: [] };
    groups.set(k, g);
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`${f.name}: _bucket without le`);
      g.buckets.push({ le: parseValue(le, f.name), value: s.value });
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${f.name}: unexpected sample ${s.name}`);
  }
  for (const [k, g] of groups) {
    if (g.sum === undefined || g.count === undefined) throw new Error(`${f.name}${k}: missing _sum or _count`);
    const last = g.buckets.at(-1);
    if (last?.le !== Infinity) throw new Error(`${f.name}${k}: the last bucket is not le="+Inf"`);
    if (last.value !== g.count) throw new Error(`${f.name}${k}: +Inf bucket ${last.value} != _count ${g.count}`);
    g.buckets.forEach((b, i) => {
      const prev = g.buckets[i - 1];
      if (prev && (b.le <= prev.le || b.value < prev.value)) throw new Error(`${f.name}${k}: buckets not increasing/cumulative at le=${b.le}`);
    });
  }
}
