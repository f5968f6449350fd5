/**
 * Answers to requests that Node's HTTP parser refuses before Fastify sees them (a header block over 16 KiB — a
 * very long URL is part of it —, a malformed request line or header, raw control bytes in the path, a client
 * that stalls while sending): the same `{ error, message, code }` body as every other error, with a catalogued
 * code, instead of Fastify's default `{ error, message, statusCode }`. The connection is closed afterwards: the
 * parser cannot tell where the next request would start.
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { ERROR_CATALOGUE, type ErrorCode } from '../errors.ts';

/** The catalogued code and message for a parser error code (`HPE_…`, `ERR_HTTP_REQUEST_TIMEOUT`). */
export function clientErrorAnswer(errCode: string | undefined): { code: ErrorCode; message: string } {
  switch (errCode) {
    case 'HPE_HEADER_OVERFLOW':
      return { code: 'HEADERS_TOO_LARGE', message: 'The request line and headers are larger than 16 KiB (a URL that long is refused too)' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { code: 'REQUEST_TIMEOUT', message: 'The request was not received completely in time' };
    default:
      return { code: 'VALIDATION_FAILED', message: 'The HTTP request is malformed (request line, header or body framing); check for raw control or non-ASCII bytes in the URL and headers' };
  }
}

/** Fastify's `clientErrorHandler`: writes the catalogued answer, then closes the socket. */
export function createClientErrorHandler(log: FastifyBaseLogger): (err: Error & { code?: string; rawPacket?: unknown }, socket: Socket) => void {
  return (err, socket) => {
    // A reset connection has nobody left to answer.
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    const { code, message } = clientErrorAnswer(err.code);
    const status = ERROR_CATALOGUE[code].status;
    log.debug({ code, parserError: err.code }, 'refused a malformed HTTP request');
    if (socket.writable) {
      const body = JSON.stringify({ error: STATUS_CODES[status] ?? 'Error', message, code });
      // The answer to a HEAD request has no body (a client would read one as garbage after the answer).
      const head = Buffer.isBuffer(err.rawPacket) && err.rawPacket.subarray(0, 5).toString('latin1') === 'HEAD ';
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${head ? '' : body}`,
      );
    }
    socket.destroy();
  };
}
