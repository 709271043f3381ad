// The Lambda emulator: Runtime, Extensions and Telemetry APIs with real processes.
// Used by test/lambda and by the demo; see README "AWS Lambda" for what it does not emulate.
export {
  findPythonRuntime,
  type PythonRuntime,
  type PythonRuntimeSearch,
  type PythonVersion,
} from './python.js';
export {
  defaultRuntimeEntry,
  type ExtensionShutdown,
  type InitResult,
  type InvokeOptions,
  type InvokeResponse,
  type InvokeResult,
  type InvokeStatus,
  LambdaEmulator,
  type LogLine,
  type PendingInvoke,
  type RuntimeName,
  SandboxInitError,
  type SandboxOptions,
  type SandboxState,
  type ShutdownReason,
  type ShutdownResult,
  startSandbox,
  type TelemetryEvent,
} from './sandbox.js';
