import { Command, CommanderError } from 'commander';
import packageJson from '../package.json' with { type: 'json' };
import { registerDev } from './dev.ts';
import { registerDlq } from './dlq.ts';
import { registerDomains } from './domains.ts';
import { registerKeys } from './keys.ts';
import { registerMessages } from './messages.ts';
import { CliError, EXIT } from './output.ts';
import { registerRefusals } from './refusals.ts';
import { registerReplay } from './replay.ts';
import { registerRoutes } from './routes.ts';
import { registerSend } from './send.ts';
import { registerTail } from './tail.ts';
import { registerVerify } from './verify.ts';

function createProgram(): Command {
  const program = new Command('mailbridge')
    .description('inbound SMTP to signed JSON webhooks: run it locally, test it, operate it')
    .version(packageJson.version)
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', '\nExit codes: 0 ok, 1 failure or finding, 2 usage error.');
  registerDev(program);
  registerSend(program);
  registerRoutes(program);
  registerDomains(program);
  registerMessages(program);
  registerRefusals(program);
  registerKeys(program);
  registerDlq(program);
  registerReplay(program);
  registerTail(program);
  registerVerify(program);
  // Every subcommand throws instead of exiting, so the exit code is decided in one place.
  const override = (command: Command) => {
    command.exitOverride();
    command.commands.forEach(override);
  };
  override(program);
  return program;
}

/**
 * Runs the `mailbridge` command with `args` (without node and the script) and sets
 * `process.exitCode`: 0 ok, 1 failure or finding, 2 usage error.
 */
export async function runCli(args: readonly string[]): Promise<void> {
  try {
    await createProgram().parseAsync(args, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version "errors" are commander's way of saying it is done.
      process.exitCode = error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    } else if (error instanceof CliError) {
      if (error.message) console.error(`mailbridge: ${error.message}`);
      process.exitCode = error.exitCode;
    } else {
      console.error(`mailbridge: ${error instanceof Error ? error.message : String(error)}`);
      process.exitCode = EXIT.failure;
    }
  }
}
