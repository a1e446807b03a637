import { join } from 'node:path';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { type Command, Option } from 'commander';
import { type KeyScope, type KeyStore, newApiKey } from '../core/control/index.ts';
import { awsClientConfig, ENV } from '../core/index.ts';
import { type ApiOptions, apiKeyInUse, NO_API_KEY, withApi, withApiOptions } from './api.ts';
import { CliError, DEFAULT_DATA_DIR, formatTable, printJson, UsageError } from './output.ts';

interface CreateOptions extends ApiOptions {
  name: string;
  scope: KeyScope;
  aws?: boolean;
  table?: string;
}

/** The table `npm start` keeps its control plane in (the config's `controlPlane.tableName` default). */
const LOCAL_CONTROL_TABLE = 'mailbridge-control';

/** Writes a key straight into a control table through `client`, as the API's `POST /v1/keys` does. */
async function createKeyInTable(
  client: DynamoDBClient,
  table: string,
  key: Parameters<KeyStore['createKey']>[0],
): Promise<void> {
  const { dynamoControlStore } = await import('../core/control/index.ts');
  await dynamoControlStore(client, table).createKey(key);
}

/**
 * A key made without the API (there is no key yet to call it with): in AWS into the deployment's
 * table with the SDK's credentials; locally into the store of the stopped runtime's data folder
 * (a running one holds that store open, and answers through its API with its dev key).
 */
async function createKeyDirectly(options: CreateOptions, key: Parameters<KeyStore['createKey']>[0]) {
  const { DynamoDBClient } = await import('@aws-sdk/client-dynamodb');
  if (options.aws) {
    const table = options.table;
    if (!table) {
      throw new UsageError(`--aws needs --table (or ${ENV.controlTable}): the stack output ControlTableName`);
    }
    const client = new DynamoDBClient(awsClientConfig());
    try {
      await createKeyInTable(client, table, key);
    } catch (error) {
      throw new CliError(`cannot write the key to table ${table}: ${(error as Error).message}`);
    } finally {
      client.destroy();
    }
    return `in table ${table}`;
  }
  const { findRunningRuntime } = await import('../dev/index.ts');
  const dataDir = options.dataDir ?? DEFAULT_DATA_DIR;
  const running = await findRunningRuntime(dataDir);
  if (running) {
    throw new CliError(
      `mailbridge dev (pid ${running.pid}) holds the store of ${dataDir} and records no API key: set MAILBRIDGE_API_KEY, or stop it and run this again`,
    );
  }
  const { ensureControlTable } = await import('../core/control/index.ts');
  const { localDynamoClient, startLocalDynamo } = await import('../dev/dynamo.ts');
  const folder = join(dataDir, 'control');
  const dynamo = await startLocalDynamo({ dataDir: folder });
  const client = localDynamoClient(dynamo.endpoint);
  try {
    const table = options.table ?? LOCAL_CONTROL_TABLE;
    await ensureControlTable(client, table);
    await createKeyInTable(client, table, key);
  } finally {
    client.destroy();
    await dynamo.close();
  }
  return `in the local store in ${folder}`;
}

/** `mailbridge keys create|list|revoke`. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('API keys of the control plane (stored hashed)');

  withApiOptions(
    keys
      .command('create')
      .description(
        'make an API key; its secret is printed once. Through the API with a full-scope key; without one, straight into the store: --aws --table (the first key of a deployment), or locally the stopped runtime’s data folder',
      )
      .requiredOption('--name <name>', 'what the key is for, e.g. "ci" or "dashboard"')
      .addOption(
        new Option('--scope <scope>', 'read: GET only; full: everything')
          .choices(['read', 'full'])
          .default('read'),
      )
      .option('--aws', 'write into the deployed table with the SDK credentials (no API key needed)')
      .addOption(
        new Option(
          '--table <name>',
          `with --aws: the control table (stack output ControlTableName); locally ${LOCAL_CONTROL_TABLE}`,
        ).env(ENV.controlTable),
      ),
  ).action(async (options: CreateOptions) => {
    const viaApi = !options.aws && (await apiKeyInUse(options)) !== undefined;
    if (!options.aws && !viaApi && options.apiUrl) throw new CliError(`${NO_API_KEY} --aws --table NAME`);
    let created: { id: string; name: string; scope: KeyScope; createdAt: string; secret: string };
    let where: string;
    if (viaApi) {
      created = await withApi(options, '', (api) =>
        api.createKey({ name: options.name, scope: options.scope }),
      );
      where = 'through the API';
    } else {
      const { secret, stored } = newApiKey(options.name, options.scope, new Date());
      where = await createKeyDirectly(options, stored);
      const { hash: _hash, ...view } = stored;
      created = { ...view, secret };
    }
    if (options.json) return printJson(created);
    console.log(`key ${created.id} "${created.name}" (${created.scope}) created ${where}`);
    console.log(`secret (shown only now): ${created.secret}`);
    console.log('use it as MAILBRIDGE_API_KEY, or send it as "Authorization: Bearer <secret>"');
  });

  withApiOptions(keys.command('list').description('every API key (never its secret)')).action(
    async (options: ApiOptions) => {
      const page = await withApi(options, '', (api) => api.listKeys());
      if (options.json) return printJson(page);
      const rows = page.items.map((key) => [key.id, key.name, key.scope, key.createdAt]);
      for (const line of formatTable([['ID', 'NAME', 'SCOPE', 'CREATED'], ...rows])) console.log(line);
    },
  );

  withApiOptions(
    keys
      .command('revoke')
      .description('revoke an API key: it fails from the next request on')
      .argument('<id>', 'key id (key_…), as keys list shows it'),
  ).action(async (id: string, options: ApiOptions) => {
    await withApi(options, 'mailbridge keys list shows the keys', (api) => api.revokeKey(id));
    if (options.json) return printJson({ id, revoked: true });
    console.log(`key ${id} revoked`);
  });
}
