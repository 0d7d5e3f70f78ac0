// Hub sync, the parts the agent and the CLI use (docs/PROTOCOL.md).
export { createHubClient, HubClient } from './client';
export type { BundleOutcome, EnqueueResult, HubClientEvents, HubClientOptions, HubClientStatus, PolicyLoadReport } from './client';
export { HUB_CONFIG_SCHEMA, hubStateDirectory, parseHubConfig } from './options';
export type { DeliveryMode, HubConfig } from './options';
export { runHubCommand, HUB_USAGE } from './cli';
export { formatHubError } from './result';
export type { HubError, HubErrorCode, Result } from './result';
export type { HubLogger } from './emitter';
