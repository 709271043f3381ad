import { type CliIO, EXIT_OK, EXIT_USAGE, parseCommandArgs, UsageError } from './command.js';
import { type CommandEntry, commands } from './commands/index.js';

const io: CliIO = {
  out: (text) => process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
  err: (text) => process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
};

async function overview(): Promise<string> {
  const loaded = await Promise.all(commands.map((entry) => entry.load()));
  const lines = loaded.map((c) => `  bulkhead ${c.path.join(' ').padEnd(22)} ${c.summary}`);
  return [
    'Usage: bulkhead <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `bulkhead <command> --help` for details.',
  ].join('\n');
}

function findCommand(argv: string[]): { entry: CommandEntry; rest: string[] } | undefined {
  let best: CommandEntry | undefined;
  for (const entry of commands) {
    const matches = entry.path.every((word, i) => argv[i] === word);
    if (matches && (!best || entry.path.length > best.path.length)) best = entry;
  }
  return best ? { entry: best, rest: argv.slice(best.path.length) } : undefined;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(await overview());
    return argv.length === 0 ? EXIT_USAGE : EXIT_OK;
  }
  const found = findCommand(argv);
  if (!found) {
    io.err(`bulkhead: unknown command '${argv.join(' ')}'\n\n${await overview()}`);
    return EXIT_USAGE;
  }
  const { entry, rest } = found;
  const command = await entry.load();
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
