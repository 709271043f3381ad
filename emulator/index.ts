// The Lambda emulator: Runtime, Extensions and Telemetry APIs with real processes.
// Used by test/lambda and by the demo; see README "AWS Lambda" for what it does not emulate.
export { defaultRuntimeEntry } from './launch.js';
export type { LogLine } from './processes.js';
export {
  findPythonRuntime,
  type PythonRuntime,
  type PythonRuntimeSearch,
  type PythonVersion,
} from './python.js';
export { LambdaEmulator, SandboxInitError, startSandbox } from './sandbox.js';
export type { TelemetryEvent } from './telemetry.js';
export type {
  ExtensionShutdown,
  InitResult,
  InvokeOptions,
  InvokeResponse,
  InvokeResult,
  InvokeStatus,
  PendingInvoke,
  RuntimeName,
  SandboxOptions,
  SandboxState,
  ShutdownReason,
  ShutdownResult,
} from './types.js';
