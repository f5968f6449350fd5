/**
 * The v2 SDK contract on PostgreSQL + Mosquitto, plus the namespace switch: with `SWITCHYARD_MQTT_NAMESPACES=iot`
 * nothing answers or publishes in `$aws/things/…`, while `iot/device/…` works as before.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';
import { SdkServiceError, startSdkV2Host, type SdkV2Host } from '../helpers/aws-sdk-v2.ts';
import { awsSdkV2Contract } from './aws-sdk-v2-contract.ts';

const real = realServers(['postgres', 'mosquitto']);
awsSdkV2Contract('postgres', real.skip);

describe('SWITCHYARD_MQTT_NAMESPACES=iot (PostgreSQL + Mosquitto)', { skip: real.skip, timeout: 60_000 }, () => {
  let env: TestEnv;
  let host: SdkV2Host;
  let observer: MqttClient;
  before(async () => {
    [env, host] = await Promise.all([startTestSwitchyard('postgres', { brokers: 1, env: { SWITCHYARD_MQTT_NAMESPACES: 'iot' } }), startSdkV2Host()]);
    observer = await mqtt.connectAsync(env.brokers[0]!.mosquitto!.url, { clientId: uniqueId('observer'), reconnectPeriod: 0, protocolVersion: 4 });
  });
  after(async () => {
    await observer?.endAsync(true);
    const code = await host?.stop();
    await env?.stop();
    if (host) assert.equal(code, 0, `SDK host exit code; stderr:\n${host.output()}`);
  });

  it('leaves $aws/things/… unanswered and publishes deltas only under iot/device/…', async () => {
    const d = await env.createDevice({ uuid: uniqueId('ns-iot') });
    const seen: string[] = [];
    observer.on('message', (topic) => seen.push(topic));
    await observer.subscribeAsync([`$aws/things/${d.uuid}/#`, `iot/device/${d.uuid}/#`], { qos: 1 });
    const b = env.brokers[0]!;
    const sdk = await host.connect({ protocol: 'mqtt5', host: b.host, port: b.port, clientId: d.uuid, operationTimeoutSeconds: 2 });
    const err = await sdk.shadow('getShadow', { thingName: d.uuid }).then(
      () => assert.fail('a $aws request was answered'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof SdkServiceError);
    assert.equal(err.modeledError, undefined);
    assert.match(String(err.internalError), /TIMEOUT/i);

    const res = await env.api('POST', `/api/v1/devices/${d.uuid}/shadow`, { state: { desired: { led: 'on' } } });
    assert.equal(res.status, 200);
    const deadline = Date.now() + 5000;
    while (!seen.includes(`iot/device/${d.uuid}/shadow/update/delta`) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(seen.includes(`iot/device/${d.uuid}/shadow/update/delta`), `iot delta published; saw ${seen.join(', ')}`);
    // The observer does receive $aws topics (the SDK's request passed through the broker), yet nothing else appears there.
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(seen.includes(`$aws/things/${d.uuid}/shadow/get`), `the observer sees $aws topics; saw ${seen.join(', ')}`);
    assert.deepEqual(seen.filter((t) => t.startsWith('$aws/') && t !== `$aws/things/${d.uuid}/shadow/get`), []);
    await sdk.disconnect();
  });
});
