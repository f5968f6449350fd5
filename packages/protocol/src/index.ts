/** @switchyard/protocol — pure shared logic: ids, topics, shadow semantics, backoff, job states. */
export * from './ids.ts';
export * from './topics.ts';
export * from './shadow.ts';
export * from './backoff.ts';
export * from './jobs.ts';
export * from './tls-failure.ts';
