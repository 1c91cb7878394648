/** The agent as a library, for gateway vendors who embed it. */
export { AGENT_VERSION, Agent, type RenewResult } from "./agent.ts";
export { type BackoffOptions, backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
export { type AgentDeps, BUILD_TIME, nodeDeps, type Timers } from "./deps.ts";
export { type EnrollOptions, enroll } from "./enrollment.ts";
export { EstClient, type EstOutcome, retryAfter } from "./est.ts";
export { generateKey, KEY_TYPES, type KeyType, makeCsr } from "./keys.ts";
export { type AgentEvent, MqttReporter, type StatusDocument } from "./status.ts";
export { type AgentConfig, type AgentState, AgentStore, type CrashStep, type Identity } from "./store.ts";
export { acceptCaBundle, verifyChain } from "./trust.ts";
