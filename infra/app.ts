import { existsSync } from 'node:fs';
import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { loadDeployment } from './settings.ts';
import { MailbridgeStack } from './stack.ts';

/** The settings file: `-c settings=FILE`, else `mailbridge.deploy.json` in the working directory, else the example. */
const EXAMPLE_SETTINGS = 'infra/example/settings.json';

const app = new App();
const chosen = app.node.tryGetContext('settings') as string | undefined;
const settingsPath =
  chosen ?? (existsSync('mailbridge.deploy.json') ? 'mailbridge.deploy.json' : EXAMPLE_SETTINGS);
const deployment = loadDeployment(settingsPath);
const { settings } = deployment;
const stack = new MailbridgeStack(app, settings.stackName, {
  deployment,
  description: 'mailbridge: inbound SMTP to signed webhooks',
});
if (settingsPath === EXAMPLE_SETTINGS) {
  Validations.of(stack).addWarning(
    'mailbridge:example-settings',
    `Built from the example settings (${EXAMPLE_SETTINGS}); copy them to mailbridge.deploy.json and edit before deploying.`,
  );
}
// cdk-nag's AwsSolutions pack: a finding that is not acknowledged with a reason fails synth.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
