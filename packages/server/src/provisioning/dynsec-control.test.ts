import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { systemClock } from '../clock.ts';
import { silentLogger } from '../log.ts';
import { DynsecUnavailableError, createDynsecControl, type DynsecCommand, type DynsecTransport } from './dynsec-control.ts';
import { reconcileAcls } from './dynsec-provisioner.ts';

/**
 * The plugin's side of the control topic, in memory: answers each message after `delayMs` (or never), echoing
 * every command's correlation data, and first sends an answer to somebody else's request.
 */
function fakePlugin(o: { delayMs: number; answer?: boolean; failPublish?: boolean }) {
  const messages: Array<{ at: number; commands: Array<DynsecCommand & { correlationData: string }> }> = [];
  const answeredAt: number[] = [];
  let handler: ((payload: Buffer) => void) | null = null;
  const transport: DynsecTransport = {
    async listen(_brokerId, topic, h) {
      assert.equal(topic, '$CONTROL/dynamic-security/v1/response');
      handler = h;
    },
    async publish(_brokerId, topic, payload) {
      assert.equal(topic, '$CONTROL/dynamic-security/v1');
      if (o.failPublish) throw new Error('broker 7 is not connected');
      const { commands } = JSON.parse(payload) as { commands: Array<DynsecCommand & { correlationData: string }> };
      messages.push({ at: performance.now(), commands });
      if (o.answer === false) return;
      setTimeout(() => {
        handler?.(Buffer.from(JSON.stringify({ responses: [{ command: 'getClient', correlationData: 'someone-else.0' }] })));
        handler?.(Buffer.from('not json'));
        answeredAt.push(performance.now());
        handler?.(
          Buffer.from(JSON.stringify({ responses: commands.map((c) => ({ command: c.command, correlationData: c.correlationData, ...(c.fail ? { error: 'Client already exists' } : {}) })) })),
        );
      }, o.delayMs);
    },
  };
  return { transport, messages, answeredAt };
}

const cmd = (name: string, extra: Record<string, unknown> = {}): DynsecCommand => ({ command: name, ...extra });

describe('dynsec control channel', () => {
  it('batches the requests that arrive while a message is in flight, and answers each caller with its own responses', async () => {
    const plugin = fakePlugin({ delayMs: 30 });
    const control = createDynsecControl({ transport: plugin.transport, log: silentLogger(), clock: systemClock, restRatio: 0 });
    const first = control.run(1, [cmd('createRole', { rolename: 'a' })]);
    const rest = [
      control.run(1, [cmd('createRole', { rolename: 'b' }), cmd('createClient', { username: 'b', fail: true })]),
      control.run(1, [cmd('createRole', { rolename: 'c' }), cmd('createClient', { username: 'c' })]),
      control.run(1, [cmd('deleteClient', { username: 'd' })]),
    ];
    const answers = await Promise.all([first, ...rest]);
    assert.deepEqual(plugin.messages.map((m) => m.commands.length), [1, 5], 'one message in flight, the others batched into the next');
    assert.deepEqual(answers.map((a) => a.map((r) => r.command)), [['createRole'], ['createRole', 'createClient'], ['createRole', 'createClient'], ['deleteClient']]);
    assert.equal(answers[1]![1]!.error, 'Client already exists', "a command's own error is returned, not thrown");
    assert.ok(answers.flat().every((r) => !('correlationData' in r)));
    control.close();
  });

  it('never puts more than maxCommandsPerMessage commands in one message (a single larger request goes alone)', async () => {
    const plugin = fakePlugin({ delayMs: 5 });
    const control = createDynsecControl({ transport: plugin.transport, log: silentLogger(), clock: systemClock, maxCommandsPerMessage: 3, restRatio: 0 });
    await Promise.all([
      control.run(2, [cmd('a')]),
      control.run(2, [cmd('b'), cmd('b')]),
      control.run(2, [cmd('c'), cmd('c')]),
      control.run(2, [cmd('d'), cmd('d'), cmd('d'), cmd('d')]),
    ]);
    assert.deepEqual(plugin.messages.map((m) => m.commands.length), [1, 2, 2, 4]);
    control.close();
  });

  it('rests after each message for restRatio × the time it took before sending the next', async () => {
    const plugin = fakePlugin({ delayMs: 40 });
    const control = createDynsecControl({ transport: plugin.transport, log: silentLogger(), clock: systemClock, maxCommandsPerMessage: 1, restRatio: 1 });
    await Promise.all([control.run(3, [cmd('a')]), control.run(3, [cmd('b')]), control.run(3, [cmd('c')])]);
    assert.equal(plugin.messages.length, 3);
    for (let i = 1; i < 3; i++) {
      const rest = plugin.messages[i]!.at - plugin.answeredAt[i - 1]!;
      assert.ok(rest >= 30, `rested ${rest.toFixed(1)} ms after a 40 ms message`);
    }
    control.close();
  });

  it('rejects with DynsecUnavailableError when the plugin does not answer in time or the broker is unreachable', async () => {
    const silent = createDynsecControl({ transport: fakePlugin({ delayMs: 0, answer: false }).transport, log: silentLogger(), clock: systemClock, timeoutMs: 50 });
    await assert.rejects(silent.run(4, [cmd('createClient', { username: 'x', password: 'secret-pw' })]), (err: Error) => {
      assert.ok(err instanceof DynsecUnavailableError);
      assert.match(err.message, /did not answer within 50 ms/);
      assert.ok(!err.message.includes('secret-pw'));
      return true;
    });
    silent.close();
    const down = createDynsecControl({ transport: fakePlugin({ delayMs: 0, failPublish: true }).transport, log: silentLogger(), clock: systemClock });
    await assert.rejects(down.run(5, [cmd('getClient')]), /cannot send dynamic-security commands to broker 5/);
    down.close();
    await assert.rejects(down.run(5, [cmd('getClient')]), /closed/);
  });
});

describe('reconcileAcls', () => {
  it('removes stray ACLs and adds missing ones, and leaves a matching role alone', () => {
    const wanted = [
      { acltype: 'publishClientSend' as const, topic: 'iot/device/d/status', allow: true },
      { acltype: 'subscribePattern' as const, topic: 'iot/device/d/#', allow: true },
    ];
    assert.deepEqual(reconcileAcls('r', wanted, wanted), []);
    const current = [
      { acltype: 'publishClientSend' as const, topic: 'iot/device/d/status', allow: false },
      { acltype: 'publishClientSend' as const, topic: '#', allow: true },
    ];
    assert.deepEqual(reconcileAcls('r', current, wanted), [
      { command: 'removeRoleACL', rolename: 'r', acltype: 'publishClientSend', topic: 'iot/device/d/status' },
      { command: 'removeRoleACL', rolename: 'r', acltype: 'publishClientSend', topic: '#' },
      { command: 'addRoleACL', rolename: 'r', acltype: 'publishClientSend', topic: 'iot/device/d/status', allow: true },
      { command: 'addRoleACL', rolename: 'r', acltype: 'subscribePattern', topic: 'iot/device/d/#', allow: true },
    ]);
  });
});
