/**
 * Free TCP ports for test servers. The OS picks the port; another process may take it before the caller binds,
 * so helpers that bind retry with a fresh port when the bind fails.
 */
export { freePort } from '../../scripts/test-servers.mjs';
