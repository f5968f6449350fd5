import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatBrokerUrl, type BrokerTarget } from '../broker-target.ts';
import { reportedMqtt, reportsConnectedTo } from './report.ts';

const T0 = Date.UTC(2025, 0, 1);
function makeBroker(brokerId: number): BrokerTarget {
  const port = 1882 + brokerId;
  return { brokerId, protocol: 'mqtt', host: '127.0.0.1', port, url: formatBrokerUrl('mqtt', '127.0.0.1', port) };
}
const A = makeBroker(1);
const B = makeBroker(2);

describe('report (reported.mqtt)', () => {
  it('reports a completed move with the broker fields, the previous broker, the time, and clears what is no longer true', () => {
    assert.deepEqual(reportedMqtt({ type: 'report', status: 'connected', broker: B, previousBrokerId: 1, migratedAt: T0, assignmentVersion: 7 }), {
      status: 'connected',
      brokerId: 2,
      broker: 'mqtt://127.0.0.1:1884',
      protocol: 'mqtt',
      host: '127.0.0.1',
      port: 1884,
      assignmentVersion: 7,
      previousBrokerId: 1,
      migratedAt: '2025-01-01T00:00:00.000Z',
      targetBrokerId: null,
      error: null,
      retryInMs: null,
      attempt: null,
    });
  });

  it('leaves the last move record alone on a connected report without a move', () => {
    const r = reportedMqtt({ type: 'report', status: 'connected', broker: A, assignmentVersion: 3 });
    assert.equal('previousBrokerId' in r, false);
    assert.equal('migratedAt' in r, false);
    assert.equal(r.error, null);
  });

  it('reports migrating on the current broker with the target, and clears a previous error', () => {
    const r = reportedMqtt({ type: 'report', status: 'migrating', broker: A, targetBrokerId: 2, assignmentVersion: 5, attempt: 0 });
    assert.deepEqual(r, { status: 'migrating', brokerId: 1, broker: A.url, protocol: 'mqtt', host: '127.0.0.1', port: 1883, assignmentVersion: 5, targetBrokerId: 2, attempt: 0, error: null, retryInMs: null });
  });

  it('reports an error with the reason and the retry delay', () => {
    const r = reportedMqtt({ type: 'report', status: 'error', broker: A, targetBrokerId: 2, error: 'ECONNREFUSED', assignmentVersion: 5, attempt: 1, retryInMs: 1500 });
    assert.equal(r.status, 'error');
    assert.equal(r.brokerId, 1);
    assert.equal(r.error, 'ECONNREFUSED');
    assert.equal(r.retryInMs, 1500);
    assert.equal(r.attempt, 1);
  });

  it('tells whether a document already says connected to a broker', () => {
    const connected = reportedMqtt({ type: 'report', status: 'connected', broker: A, assignmentVersion: 1 });
    // The shadow stores no nulls: a null deletes the key.
    const stored = Object.fromEntries(Object.entries(connected).filter(([, v]) => v !== null));
    assert.equal(reportsConnectedTo(stored, A), true);
    assert.equal(reportsConnectedTo(stored, B), false);
    assert.equal(reportsConnectedTo({ ...stored, port: 1 }, A), false);
    assert.equal(reportsConnectedTo({ ...stored, error: 'x' }, A), false);
    assert.equal(reportsConnectedTo({ ...stored, status: 'migrating' }, A), false);
    assert.equal(reportsConnectedTo(undefined, A), false);
  });
});
