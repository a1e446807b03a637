import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes `document` as JSON to `dir/name` (a config file for a process or runtime under test); returns its path. */
export async function writeConfigFile(
  dir: string,
  document: object,
  name = 'mailbridge.json',
): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, JSON.stringify(document));
  return path;
}
