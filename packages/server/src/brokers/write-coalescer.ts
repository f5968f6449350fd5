/**
 * One write per event-loop turn on a broker connection.
 *
 * mqtt.js hands every packet to the socket on its own: it handles a socket read's packets one per `process.nextTick`,
 * and `mqtt-packet` corks the socket only until the next tick — so each QoS 1 message it receives is PUBACKed with a
 * `writev` of its own (measured under bench/shadow-throughput: ≈ 1 syscall, 1 TCP segment and 1 wake-up of the
 * broker per message received). Held corked from the first write or read of a turn until `setImmediate` (after the
 * poll phase that did the work), the turn's PUBACKs and publishes leave in one `writev`. Nothing waits for a timer:
 * the data goes out in the same turn of the event loop, after the callbacks that produced it.
 */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

/** Returns `hold()`: corks `stream` unless already held this turn, and uncorks it once at the turn's end. */
export function writeCoalescer(stream: Corkable, defer: (fn: () => void) => void = setImmediate): () => void {
  let held = false;
  const release = (): void => {
    held = false;
    stream.uncork();
  };
  return function hold(): void {
    if (held) return;
    held = true;
    stream.cork();
    defer(release);
  };
}
