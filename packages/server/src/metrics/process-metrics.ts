/**
 * Process basics, read at scrape time: uptime, start time, resident memory, V8 heap, CPU seconds and the event
 * loop's busy time. Event-loop utilisation is a counter of seconds the loop was busy, so any scraper can take
 * `rate(switchyard_event_loop_active_seconds_total[1m])` (0–1) without the scrapes of one disturbing another's.
 */
import { performance } from 'node:perf_hooks';
import type { Counter, Registry } from './registry.ts';

/** Adds the process metrics to `registry` and the collector that refreshes them. */
export function registerProcessMetrics(registry: Registry): void {
  const uptime = registry.gauge('switchyard_process_uptime_seconds', 'Seconds since this server process started.');
  const start = registry.gauge('switchyard_process_start_time_seconds', 'When this server process started, seconds since the Unix epoch.');
  const rss = registry.gauge('switchyard_process_resident_memory_bytes', 'Resident set size of this server process, bytes.');
  const heap = registry.gauge('switchyard_process_heap_used_bytes', 'V8 heap in use, bytes.');
  const cpu = registry.counter('switchyard_process_cpu_seconds_total', 'CPU time (user + system) this process used, seconds.');
  const busy = registry.counter(
    'switchyard_event_loop_active_seconds_total',
    'Seconds the event loop was busy (not idle); its rate is the event-loop utilisation (0-1).',
  );
  start.set([], Math.round((Date.now() - process.uptime() * 1000) / 1000));
  // Counters mirror cumulative readings: each scrape adds what was used since the previous one.
  const mirror = (counter: Counter): ((total: number) => void) => {
    let last = 0;
    return (total) => {
      if (total > last) counter.inc([], total - last);
      last = Math.max(last, total);
    };
  };
  const cpuTotal = mirror(cpu);
  const busyTotal = mirror(busy);

  registry.collect(() => {
    uptime.set([], process.uptime());
    rss.set([], process.memoryUsage.rss());
    heap.set([], process.memoryUsage().heapUsed);
    const usage = process.cpuUsage();
    cpuTotal((usage.user + usage.system) / 1e6);
    busyTotal(performance.eventLoopUtilization().active / 1000);
  });
}
