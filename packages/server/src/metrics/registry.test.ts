import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseExposition } from '../../../../test/helpers/prometheus.ts';
import { EXPOSITION_CONTENT_TYPE, Registry, escapeHelp, escapeLabelValue, formatValue } from './registry.ts';

describe('metrics registry', () => {
  it('renders HELP and TYPE before the samples of each family, in registration order, ending with a newline', async () => {
    const r = new Registry();
    const c = r.counter('x_requests_total', 'Requests.', ['op']);
    const g = r.gauge('x_open', 'Open things.');
    c.inc(['get']);
    c.inc(['get'], 2);
    c.inc(['put'], 0);
    g.set([], 7);
    assert.equal(
      await r.render(),
      [
        '# HELP x_requests_total Requests.',
        '# TYPE x_requests_total counter',
        'x_requests_total{op="get"} 3',
        'x_requests_total{op="put"} 0',
        '# HELP x_open Open things.',
        '# TYPE x_open gauge',
        'x_open 7',
        '',
      ].join('\n'),
    );
    assert.equal(EXPOSITION_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  });

  it('escapes backslash, double quote and newline in label values, and backslash and newline in HELP', async () => {
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(escapeHelp('one\\two\nthree "quoted"'), 'one\\\\two\\nthree "quoted"');
    const r = new Registry();
    r.gauge('x_broker_up', 'Up?\nSecond line \\ backslash.', ['broker_name']).set(['we"ird\\name\nline'], 1);
    const text = await r.render();
    assert.match(text, /^# HELP x_broker_up Up\?\\nSecond line \\\\ backslash\.$/m);
    assert.match(text, /^x_broker_up\{broker_name="we\\"ird\\\\name\\nline"\} 1$/m);
    const parsed = parseExposition(text);
    assert.equal(parsed.value('x_broker_up', { broker_name: 'we"ird\\name\nline' }), 1);
    assert.equal(parsed.families.get('x_broker_up')?.help, 'Up?\nSecond line \\ backslash.');
  });

  it('round-trips any label value through the text format', async () => {
    // Characters that end a line for a regex but not for the format (only \n is escaped): found by this property.
    for (const a of ['\r', '\u2028', '\u2029', ' \r\n ']) {
      const r = new Registry();
      r.counter('x_total', 'x', ['a', 'b']).inc([a, ''], 5);
      assert.equal(parseExposition(await r.render()).value('x_total', { a, b: '' }), 5, JSON.stringify(a));
    }
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ maxLength: 40 }), async (a, b) => {
        const r = new Registry();
        r.counter('x_total', 'x', ['a', 'b']).inc([a, b], 5);
        assert.equal(parseExposition(await r.render()).value('x_total', { a, b }), 5);
      }),
      { numRuns: 200 },
    );
  });

  it('renders a histogram as cumulative _bucket samples ending at le="+Inf", then _sum and _count', async () => {
    const r = new Registry();
    const h = r.histogram('x_duration_seconds', 'Durations.', ['channel'], [0.1, 1, 10]);
    for (const v of [0.05, 0.1, 0.5, 2, 50]) h.observe(['shadow'], v);
    h.init(['poll']);
    assert.equal(
      await r.render(),
      [
        '# HELP x_duration_seconds Durations.',
        '# TYPE x_duration_seconds histogram',
        'x_duration_seconds_bucket{channel="shadow",le="0.1"} 2',
        'x_duration_seconds_bucket{channel="shadow",le="1"} 3',
        'x_duration_seconds_bucket{channel="shadow",le="10"} 4',
        'x_duration_seconds_bucket{channel="shadow",le="+Inf"} 5',
        'x_duration_seconds_sum{channel="shadow"} 52.65',
        'x_duration_seconds_count{channel="shadow"} 5',
        'x_duration_seconds_bucket{channel="poll",le="0.1"} 0',
        'x_duration_seconds_bucket{channel="poll",le="1"} 0',
        'x_duration_seconds_bucket{channel="poll",le="10"} 0',
        'x_duration_seconds_bucket{channel="poll",le="+Inf"} 0',
        'x_duration_seconds_sum{channel="poll"} 0',
        'x_duration_seconds_count{channel="poll"} 0',
        '',
      ].join('\n'),
    );
    assert.deepEqual(h.get(['shadow']), { count: 5, sum: 52.65 });
  });

  it('keeps a histogram without labels consistent for any observations', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.double({ min: 0, max: 1000, noNaN: true }), { maxLength: 50 }), async (vs) => {
        const r = new Registry();
        const h = r.histogram('x_seconds', 'x', [], [0.01, 1, 100]);
        for (const v of vs) h.observe([], v);
        const parsed = parseExposition(await r.render()); // checks cumulative buckets and +Inf == _count
        assert.equal(parsed.value('x_seconds_count'), vs.length);
        assert.equal(parsed.value('x_seconds_bucket', { le: '1' }), vs.filter((v) => v <= 1).length);
      }),
      { numRuns: 100 },
    );
  });

  it('writes non-finite values as +Inf, -Inf and NaN', () => {
    assert.equal(formatValue(Infinity), '+Inf');
    assert.equal(formatValue(-Infinity), '-Inf');
    assert.equal(formatValue(NaN), 'NaN');
    assert.equal(formatValue(0.25), '0.25');
  });

  it('refuses invalid names, duplicate families, a wrong label count, a counter going down and bad buckets', () => {
    const r = new Registry();
    assert.throws(() => r.counter('9bad', 'x'), /invalid metric name/);
    assert.throws(() => r.counter('x_total', 'x', ['bad-label']), /invalid label name/);
    assert.throws(() => r.counter('y_total', 'x', ['__reserved']), /invalid label name/);
    const c = r.counter('ok_total', 'x', ['a']);
    assert.throws(() => r.gauge('ok_total', 'again'), /registered twice/);
    assert.throws(() => c.inc(['a', 'b']), /takes 1 label value/);
    assert.throws(() => c.inc(['a'], -1), /only go up/);
    assert.throws(() => c.labels('a').inc(-1), /only go up/);
    assert.throws(() => r.histogram('h1', 'x', ['le'], [1]), /"le"/);
    assert.throws(() => r.histogram('h2', 'x', [], [1, 1]), /strictly increasing/);
    assert.throws(() => r.histogram('h3', 'x', [], []), /strictly increasing/);
  });

  it('clears a gauge so that series of things that are gone stop rendering', async () => {
    const r = new Registry();
    const g = r.gauge('x_up', 'x', ['id']);
    g.set(['1'], 1);
    g.set(['2'], 0);
    g.clear();
    g.set(['2'], 1);
    assert.doesNotMatch(await r.render(), /id="1"/);
  });

  it('runs collectors before rendering; a failing collector fails the render unless handled', async () => {
    const r = new Registry();
    const g = r.gauge('x_now', 'x');
    let n = 0;
    r.collect(async () => g.set([], ++n));
    assert.match(await r.render(), /^x_now 1$/m);
    assert.match(await r.render(), /^x_now 2$/m);
    r.collect(() => {
      throw new Error('boom');
    });
    await assert.rejects(r.render(), /boom/);
    const errors: unknown[] = [];
    assert.match(await r.render((e) => errors.push(e)), /^x_now 4$/m);
    assert.equal(errors.length, 1);
  });

  it('hands out counter children that increment without a label lookup', async () => {
    const r = new Registry();
    const child = r.counter('x_total', 'x', ['op']).labels('get');
    child.inc();
    child.inc(4);
    assert.equal(child.get(), 5);
    assert.match(await r.render(), /^x_total\{op="get"\} 5$/m);
  });
});

describe('the exposition reader used by the tests', () => {
  const ok = '# HELP a_total A.\n# TYPE a_total counter\na_total{x="1"} 2\n';
  it('accepts a valid exposition', () => {
    assert.equal(parseExposition(ok).value('a_total', { x: '1' }), 2);
  });
  it('refuses what a scraper would refuse', () => {
    const bad: Array<[string, RegExp]> = [
      [ok.slice(0, -1), /newline/],
      ['a_total 1\n', /without HELP and TYPE/],
      ['# HELP a_total A.\na_total 1\n', /without HELP and TYPE/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total 1\na_total 2\n', /twice/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total{x="1} 1\n', /bad label|unterminated|not a HELP/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total{x="\\q"} 1\n', /bad escape/],
      ['# HELP a_total A.\n# TYPE a_total counter\na_total one\n', /bad value/],
      ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /cumulative/],
      ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /\+Inf/],
      ['# HELP h H.\n# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /!= _count/],
    ];
    for (const [text, re] of bad) assert.throws(() => parseExposition(text), re, JSON.stringify(text));
  });
});
