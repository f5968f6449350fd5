import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdminClient, CliError, resolveClient } from './admin-client.ts';
import { assignCommand } from './assign-command.ts';

/** A client whose server is never reached: argument errors must come first. */
const unreachable = new AdminClient('http://127.0.0.1:9', 'sya_0123456789abcdef');

async function refused(uuid: string, brokerId: string, o: { channel?: string; timeoutS?: number } = {}): Promise<CliError> {
  try {
    await assignCommand(unreachable, uuid, brokerId, { wait: false, timeoutS: 150, ...o }, () => undefined);
  } catch (err) {
    assert.ok(err instanceof CliError, String(err));
    return err;
  }
  assert.fail('no error');
}

describe('switchyard assign: arguments', () => {
  it('refuses a bad uuid, broker id, channel or timeout with exit code 2 and a message naming it', async () => {
    for (const [uuid, brokerId, o, re] of [
      ['a/b', '1', {}, /^uuid must be 1-128 characters .* got "a\/b"$/],
      ['', '1', {}, /^uuid must be/],
      ['x'.repeat(200), '1', {}, /got "x{140}…"$/],
      ['dev-1', '0', {}, /^brokerId must be a positive integer/],
      ['dev-1', '99999999999', {}, /at most 2147483647/],
      ['dev-1', '1', { channel: 'sms' }, /^--channel must be one of shadow, command, job, poll, got "sms"$/],
      ['dev-1', '1', { timeoutS: 99_999_999_999 }, /^--timeout must be 1-86400 seconds/],
    ] as const) {
      const err = await refused(uuid, brokerId, o);
      assert.equal(err.exitCode, 2);
      assert.match(err.message, re);
    }
  });

  it('refuses a token that cannot be sent as a header, without showing it', async () => {
    for (const token of ['sya_with space-0123', 'sya_tab\t0123456789', 'sya_nl\n0123456789', 'sya_名前0123456789']) {
      await assert.rejects(resolveClient({ token, apiUrl: 'http://127.0.0.1:9' }), (err: CliError) => err.exitCode === 2 && /value not shown/.test(err.message) && !err.message.includes(token));
    }
    assert.equal((await resolveClient({ token: 'sya_fine-0123456789', apiUrl: 'http://127.0.0.1:9' })).token, 'sya_fine-0123456789');
  });
});
