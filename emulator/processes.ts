// Child processes of a sandbox. Each runs in its own process group (as RIE starts
// extensions and the runtime), so freeze, thaw and kill reach every descendant.
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

export type LogSource = string;

export interface LogLine {
  /** `runtime` or `extension:<name>`. */
  source: LogSource;
  stream: 'stdout' | 'stderr';
  line: string;
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class SandboxProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  exit: ExitInfo | undefined;
  /** Set when the process could not be started at all (ENOENT, EACCES …). */
  spawnError: Error | undefined;

  constructor(
    readonly source: LogSource,
    file: string,
    args: readonly string[],
    options: { cwd: string; env: NodeJS.ProcessEnv },
    onLog: (line: LogLine) => void,
  ) {
    this.child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
      });
      this.child.once('error', (error) => {
        this.spawnError = error;
        if (this.child.pid === undefined) {
          this.exit = { code: null, signal: null };
          resolve(this.exit);
        }
      });
    });
    for (const [stream, readable] of [
      ['stdout', this.child.stdout],
      ['stderr', this.child.stderr],
    ] as const) {
      if (!readable) continue;
      createInterface({ input: readable, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) =>
        onLog({ source, stream, line }),
      );
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exit === undefined && this.child.pid !== undefined;
  }

  /**
   * Signals the whole process group. A group outlives its leader while any member lives,
   * so this is tried even after the leader exited; ESRCH just means nobody is left.
   */
  signalGroup(signal: NodeJS.Signals): boolean {
    const pid = this.child.pid;
    if (pid === undefined) return false;
    try {
      process.kill(-pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Waits (bounded) until /proc shows the process stopped (`T`) or gone. Where /proc does not
   * exist the signal is trusted as sent.
   */
  async waitStopped(ms: number): Promise<boolean> {
    const pid = this.child.pid;
    if (pid === undefined) return true;
    const until = Date.now() + ms;
    for (;;) {
      let state: string;
      try {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        return true;
      }
      if (state === 'T' || state === 't' || state === 'Z' || state === 'X') return true;
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  /** Resolves with the exit, or `undefined` when `ms` passed first. */
  async waitExit(ms: number): Promise<ExitInfo | undefined> {
    if (this.exit) return this.exit;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL the group and wait for the leader to be reaped. */
  async kill(): Promise<ExitInfo> {
    this.signalGroup('SIGCONT');
    this.signalGroup('SIGKILL');
    return this.exited;
  }
}
