/** The agent as a library, for gateway vendors who embed it. */
export {
  AGENT_VERSION,
  Agent,
  type AgentDeps,
  acceptCaBundle,
  BUILD_TIME,
  type EnrollOptions,
  enroll,
  nodeDeps,
  type RenewResult,
  type Timers,
  verifyChain,
} from "./agent.ts";
export { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
export { EstClient, type EstOutcome, retryAfter } from "./est.ts";
export { generateKey, KEY_TYPES, type KeyType, makeCsr } from "./keys.ts";
export { type AgentEvent, MqttReporter, type StatusDocument } from "./status.ts";
export { type AgentConfig, type AgentState, AgentStore, type CrashStep, type Identity } from "./store.ts";
