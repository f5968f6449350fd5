/**
 * AWS IoT Device Shadow semantics (reference §1), split by capability:
 * - `shadow-merge.ts`: JSON types, merge, delta, metadata;
 * - `shadow-request.ts`: request validation, limits, error messages;
 * - `shadow-messages.ts`: applying an update and the reply messages.
 */
export * from './shadow-merge.ts';
export * from './shadow-request.ts';
export * from './shadow-messages.ts';
