/** @switchyard/agent — the device agent as a library (`createAgent`) plus its parts, for embedding and tests. */
export { createAgent, AgentStartError, type Agent, type AgentOptions, type AgentStatus, type AgentEvents } from './agent.ts';
export { parseAgentConfig, agentUsage, AgentConfigError, AGENT_OPTIONS, AGENT_DEFAULTS, type AgentConfig, type AgentChannel } from './config.ts';
export { systemClock, type Clock, type TimerHandle } from './clock.ts';
export { brokerTargetFromDesired, parseBrokerTarget, formatBrokerUrl, sameBroker, type BrokerTarget, type BrokerProtocol } from './broker-target.ts';
export { createStateStore, STATE_FILE_NAME, StateFileError, type AgentState, type StateStore } from './state/state-store.ts';
export { PublishQueue, PublishQueueFullError, PublishQueueClosedError, type PublishOptions } from './publish-queue.ts';
export { createMigrationMachine, DEFAULT_MIGRATION_CONFIG, type MigrationMachineConfig } from './migration/migration-machine.ts';
export type { MigrationState, MigrationStateEvent, MigrationEvent, MigrationEffect } from './migration/migration-types.ts';
export { fetchDeviceConfig, ConfigFetchError, type DeviceConfig } from './poller/config-client.ts';
export type { HeartbeatMessage } from './telemetry/heartbeat.ts';
