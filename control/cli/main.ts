import { type CliIO, type Command, EXIT_OK, EXIT_USAGE, parseCommandArgs, UsageError } from './command.js';
import { commands } from './commands/index.js';

const io: CliIO = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

function overview(): string {
  const lines = commands.map((c) => `  bulkhead ${c.path.join(' ').padEnd(22)} ${c.summary}`);
  return [
    'Usage: bulkhead <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `bulkhead <command> --help` for details.',
  ].join('\n');
}

function findCommand(argv: string[]): { command: Command; rest: string[] } | undefined {
  let best: Command | undefined;
  for (const command of commands) {
    const matches = command.path.every((word, i) => argv[i] === word);
    if (matches && (!best || command.path.length > best.path.length)) best = command;
  }
  return best ? { command: best, rest: argv.slice(best.path.length) } : undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(overview());
    return argv.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  const found = findCommand(argv);
  if (!found) {
    io.err(`bulkhead: unknown command '${argv.join(' ')}'\n\n${overview()}`);
    return EXIT_USAGE;
  }
  const { command, rest } = found;
  try {
    const args = parseCommandArgs(command, rest);
    if (args.values.help) {
      io.out(command.usage);
      return EXIT_OK;
    }
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`bulkhead ${command.path.join(' ')}: ${error.message}\n\n${command.usage}`);
      return EXIT_USAGE;
    }
    io.err(`bulkhead ${command.path.join(' ')}: ${(error as Error).message}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`bulkhead: ${(error as Error).stack ?? error}\n`);
    process.exitCode = 1;
  },
);
