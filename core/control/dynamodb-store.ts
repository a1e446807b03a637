import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CreateTableCommand,
  type CreateTableCommandInput,
  DescribeTableCommand,
  type DynamoDBClient,
  ResourceNotFoundException,
} from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
  UpdateCommand,
  type UpdateCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { decodeTime, encodeTime, monotonicFactory } from 'ulid';
import { StoreConflictError, StoreRejectedError } from './errors.ts';
import { matchesQuery, senderKey, subjectWords } from './message-view.ts';
import { type Refusal, type TimelineEvent, TimelineEventSchema } from './schemas.ts';
import { isFollowUp } from './status.ts';
import type {
  Change,
  ControlStore,
  ObjectRef,
  Page,
  StoredDomain,
  StoredKey,
  StoredMessage,
  StoredRoute,
} from './store.ts';

/*
 * One DynamoDB table (single-table design), on-demand, TTL on `expiresAt` (epoch seconds).
 *
 * | item          | pk          | sk                          | notes                                        |
 * |---------------|-------------|-----------------------------|----------------------------------------------|
 * | message       | M#<id>      | M                           | e_<eventId>: one attribute per timeline event |
 * | more rcpts    | M#<id>      | R#<address>                 | 2nd and later recipients, for byRecipient     |
 * | refusal       | REFUSALS    | <minute>#<hash(client,rcpt)>| one per (minute, client, recipient), see below|
 * | API route     | ROUTE       | <route id>                  | tombstone (deleted, TTL 1 day) keeps revision |
 * | API domain    | DOMAIN      | <name>                      | same tombstones                               |
 * | API key       | KEY         | <key id>                    | SHA-256 of the secret, never the secret       |
 * | change        | CHANGE      | <ULID>                      | state after a route/domain write, TTL 1 day   |
 * | activity      | A#<hour>#<n>| <at>#<message id>           | a follow-up log write, TTL 1 day (see below)  |
 * | dup. marker   | DEDUPE#<fp> | D                           | first message id of a fingerprint, TTL 14 days|
 *
 * Global secondary indexes, KEYS_ONLY (a list reads the items by key afterwards), all sorted by
 * message id, a ULID, so newest first is a descending query and a time range is a key range:
 *   byDay (day = YYYY-MM-DD), byRecipient (rcpt), bySender (sender: MAIL FROM or "<>").
 * Index keys are written with the `received` event and never change, so later events write the
 * table alone (AWS: an update that leaves index key and projected attributes as they were does
 * not write the index).
 *
 * Writes per message (1 recipient, 1 route, delivered on the first try): 3 UpdateItem calls
 * (listener: received; parse: parsed; deliver: attempt + delivered together), each under 1 KB:
 * 3 write units on the table + 3 on the indexes (the first write enters all three) = 6 WRU. Each
 * further try adds 1 WRU, each further recipient 2 (its item and its index entry).
 *
 * A log write with a follow-up event (a retry scheduled or tried, a dead letter, parse given up, a retry or release
 * asked) also puts an activity item, so a reader can follow messages received long before: 1 WRU
 * more for such a write, none for a message delivered at its first try. Four shards per hour keep
 * a retry storm from throttling one key (~1,000 writes a second each).
 *
 * A refusal's key makes a repeat within its minute overwrite it (the dedupe a listener's writer,
 * which may only BatchWriteItem, gets without a conditional write), so keys order minutes, not
 * refusals within one: a list reads each minute whole (at most 100 a minute per listener process,
 * the writers' cap) and orders it by time itself.
 *
 * dynalite (local) has no TTL deletion, transactions or streams. So nothing relies on them: reads
 * skip expired items themselves (TTL deletion in AWS lags too), entity and change writes are two
 * conditional single-item writes (a reader reloads everything periodically, so a change item lost
 * between the two is healed), and listeners poll the change items instead of a stream.
 */

export const CONTROL_TABLE_KEYS = { partitionKey: 'pk', sortKey: 'sk', ttlAttribute: 'expiresAt' } as const;

/**
 * Partition key prefix of the duplicate markers: one partition per fingerprint, so marking spreads
 * over the table instead of loading one key (a single partition key takes ~1,000 writes a second).
 */
export const DEDUPE_PARTITION_PREFIX = 'DEDUPE#';

/** Partition key prefix of the activity items (`A#<hour>#<shard>`), written with the message log. */
export const ACTIVITY_PARTITION_PREFIX = 'A#';

/** Global secondary indexes: name → partition key attribute; each sorts by `id`. */
export const CONTROL_TABLE_INDEXES = { byDay: 'day', byRecipient: 'rcpt', bySender: 'sender' } as const;

/** The table's schema, for local provisioning; the CDK stack declares the same keys and indexes. */
export function controlTableDefinition(tableName: string): CreateTableCommandInput {
  const indexAttributes = Object.values(CONTROL_TABLE_INDEXES);
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    KeySchema: [
      { AttributeName: 'pk', KeyType: 'HASH' },
      { AttributeName: 'sk', KeyType: 'RANGE' },
    ],
    AttributeDefinitions: ['pk', 'sk', 'id', ...indexAttributes].map((name) => ({
      AttributeName: name,
      AttributeType: 'S',
    })),
    GlobalSecondaryIndexes: Object.entries(CONTROL_TABLE_INDEXES).map(([name, attribute]) => ({
      IndexName: name,
      KeySchema: [
        { AttributeName: attribute, KeyType: 'HASH' },
        { AttributeName: 'id', KeyType: 'RANGE' },
      ],
      Projection: { ProjectionType: 'KEYS_ONLY' },
    })),
  };
}

/** Creates the table unless it exists, and waits until it is active (the local store). */
export async function ensureControlTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new CreateTableCommand(controlTableDefinition(tableName)));
  } catch (error) {
    if ((error as Error).name !== 'ResourceInUseException') throw error;
  }
  for (;;) {
    try {
      const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
      if (Table?.TableStatus === 'ACTIVE') return;
    } catch (error) {
      if (!(error instanceof ResourceNotFoundException)) throw error;
    }
    await sleep(20);
  }
}

export interface DynamoControlStoreOptions {
  /** How long the message log keeps a message, like the raw mail's lifecycle rule. @default 30 */
  retentionDays?: number;
  /** How long refusals are kept. @default 3 */
  refusalRetentionDays?: number;
  now?: () => Date;
}

const DAY_SECONDS = 86400;
/** A sender gives up retrying within days (RFC 5321 §4.5.4.1 suggests 4–5); a marker outlives that. */
const DEDUPE_TTL_SECONDS = 14 * DAY_SECONDS;
const CHANGE_TTL_SECONDS = DAY_SECONDS;
const ACTIVITY_TTL_SECONDS = DAY_SECONDS;
const ACTIVITY_SHARDS = 4;
const TOMBSTONE_TTL_SECONDS = DAY_SECONDS;
/** Message candidates read for one list page before it returns with a cursor (DynamoDB reads 1 MB per Query alike). */
const MAX_EXAMINED_PER_PAGE = 1000;
const BATCH_GET_SIZE = 100;
/** Refusals one Query reads: a list page costs what it needs, not a whole 1 MB page. */
const REFUSALS_PER_QUERY = 100;
const BATCH_WRITE_SIZE = 25;

/** `#name` → `name` for each attribute an expression names (many are reserved words: status, name, data…). */
const names = (...attributes: string[]) => Object.fromEntries(attributes.map((a) => [`#${a}`, a]));
const epochSeconds = (date: Date) => Math.floor(date.getTime() / 1000);
const isConflict = (error: unknown) => (error as Error).name === 'ConditionalCheckFailedException';
/**
 * Errors that a repeat of the same request gets again (DynamoDB's "Error handling": 400s that are
 * not retryable): an invalid request, or one the caller's role may not make. Throttling and 5xx
 * are not among them.
 */
const REJECTIONS: ReadonlySet<string> = new Set(['ValidationException', 'AccessDeniedException']);
const isRejection = (error: unknown) =>
  REJECTIONS.has((error as Error).name) ||
  (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403;
/** The smallest and largest ULID of a millisecond, for key ranges over time. */
const ulidFloor = (time: number) => `${encodeTime(time, 10)}0000000000000000`;
const ulidCeiling = (time: number) => `${encodeTime(time, 10)}ZZZZZZZZZZZZZZZZ`;
const dayOf = (time: number) => new Date(time).toISOString().slice(0, 10);
const hourOf = (time: number) => new Date(time).toISOString().slice(0, 13);
/** The activity partition of a message: its hour, and a shard from the random end of its id. */
const activityKey = (at: string, messageId: string) =>
  `${ACTIVITY_PARTITION_PREFIX}${hourOf(Date.parse(at))}#${messageId.charCodeAt(messageId.length - 1) % ACTIVITY_SHARDS}`;

function encodeCursor(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function decodeCursor<T>(cursor: string | undefined, check: (value: unknown) => value is T): T | undefined {
  if (cursor === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    value = undefined;
  }
  if (!check(value)) throw new RangeError('cursor: not a cursor this API made');
  return value;
}

type Item = Record<string, unknown>;

/** Where a refusal sits in a list: by time, then by key (two in one millisecond). */
type RefusalPosition = { at: string; sk: string };

/** Newest first, as lists of refusals go. */
const newestFirst = (a: RefusalPosition, b: RefusalPosition) =>
  a.at !== b.at ? (a.at < b.at ? 1 : -1) : a.sk === b.sk ? 0 : a.sk < b.sk ? 1 : -1;

/** A page of refusals goes on from `minute` (down), past `after` within it when given. */
type RefusalCursor = { minute: string; after?: RefusalPosition };

function isRefusalCursor(value: unknown): value is RefusalCursor {
  const { minute, after } = (value ?? {}) as { minute?: unknown; after?: Partial<Record<string, unknown>> };
  return (
    typeof minute === 'string' &&
    /^\d{4}-\d\d-\d\dT\d\d:\d\d$/.test(minute) &&
    (after === undefined || (typeof after?.at === 'string' && typeof after.sk === 'string'))
  );
}

/** Reads the timeline back from the `e_<eventId>` attributes, oldest first (ties by event id). */
function messageFromItem(item: Item): StoredMessage {
  const events: { id: string; event: TimelineEvent }[] = [];
  for (const [name, value] of Object.entries(item)) {
    if (!name.startsWith('e_')) continue;
    const parsed = TimelineEventSchema.safeParse(value);
    if (parsed.success) events.push({ id: name.slice(2), event: parsed.data });
  }
  events.sort((a, b) => Date.parse(a.event.at) - Date.parse(b.event.at) || (a.id < b.id ? -1 : 1));
  return {
    id: item.id as string,
    timeline: events.map(({ event }) => event),
    raw: (item.raw as ObjectRef | undefined) ?? null,
  };
}

function routeFromItem(item: Item): StoredRoute {
  return {
    route: item.route as StoredRoute['route'],
    secrets: item.secrets as StoredRoute['secrets'],
    revision: item.rev as number,
    createdAt: item.createdAt as string,
    updatedAt: item.updatedAt as string,
  };
}

function domainFromItem(item: Item): StoredDomain {
  return {
    name: item.sk as string,
    status: item.status as StoredDomain['status'],
    token: item.token as string,
    claimedBy: item.claimedBy as string,
    createdAt: item.createdAt as string,
    claimExpiresAt: item.claimExpiresAt as string,
    verifiedAt: (item.verifiedAt as string | null) ?? null,
    revision: item.rev as number,
  };
}

/** Every page of a query. */
async function queryAll(doc: DynamoDBDocumentClient, input: QueryCommandInput): Promise<Item[]> {
  const items: Item[] = [];
  let start: Record<string, unknown> | undefined;
  do {
    const page = await doc.send(new QueryCommand({ ...input, ExclusiveStartKey: start }));
    items.push(...((page.Items ?? []) as Item[]));
    start = page.LastEvaluatedKey;
  } while (start);
  return items;
}

/**
 * The {@link ControlStore} on DynamoDB. `client` is built by the caller (region, endpoint, retries),
 * as every AWS client in mailbridge is.
 */
export function dynamoControlStore(
  client: DynamoDBClient,
  tableName: string,
  options: DynamoControlStoreOptions = {},
): ControlStore {
  const doc = DynamoDBDocumentClient.from(client, { marshallOptions: { removeUndefinedValues: true } });
  const retentionSeconds = (options.retentionDays ?? 30) * DAY_SECONDS;
  const refusalRetentionSeconds = (options.refusalRetentionDays ?? 3) * DAY_SECONDS;
  const now = options.now ?? (() => new Date());
  const nextChangeId = monotonicFactory();

  const conditional = async <T>(write: () => Promise<T>, what: string): Promise<T> => {
    try {
      return await write();
    } catch (error) {
      if (isConflict(error)) throw new StoreConflictError(what, { cause: error });
      throw error;
    }
  };

  /** A message log write, whose permanent refusal becomes a {@link StoreRejectedError}. */
  const logWrite = async (write: () => Promise<unknown>, what: string): Promise<void> => {
    try {
      await write();
    } catch (error) {
      if (isRejection(error)) {
        throw new StoreRejectedError(`${what}: ${(error as Error).message}`, { cause: error });
      }
      throw error;
    }
  };

  /** The second write of every route/domain change: what listeners poll. */
  const recordChange = async (
    kind: Change['kind'],
    key: string,
    revision: number,
    state: StoredRoute | StoredDomain | null,
  ) => {
    await doc.send(
      new PutCommand({
        TableName: tableName,
        Item: {
          pk: 'CHANGE',
          sk: nextChangeId(now().getTime()),
          kind,
          key,
          rev: revision,
          state,
          expiresAt: epochSeconds(now()) + CHANGE_TTL_SECONDS,
        },
      }),
    );
  };

  const update = async (input: Omit<UpdateCommandInput, 'TableName'>) =>
    (await doc.send(new UpdateCommand({ TableName: tableName, ReturnValues: 'ALL_NEW', ...input })))
      .Attributes as Item;

  const getItem = async (pk: string, sk: string) =>
    (await doc.send(new GetCommand({ TableName: tableName, Key: { pk, sk }, ConsistentRead: true }))).Item as
      | Item
      | undefined;

  const live = (item: Item | undefined) =>
    item && !item.deleted && !(typeof item.expiresAt === 'number' && item.expiresAt <= epochSeconds(now()))
      ? item
      : undefined;

  const batchWrite = async (items: Item[]) => {
    for (let i = 0; i < items.length; i += BATCH_WRITE_SIZE) {
      let requests = items.slice(i, i + BATCH_WRITE_SIZE).map((Item) => ({ PutRequest: { Item } }));
      for (let tries = 0; requests.length > 0; tries++) {
        if (tries > 0) await sleep(Math.min(1000, 50 * 2 ** tries));
        const answer = await doc.send(new BatchWriteCommand({ RequestItems: { [tableName]: requests } }));
        requests = (answer.UnprocessedItems?.[tableName] ?? []) as typeof requests;
        if (tries > 8 && requests.length > 0) throw new Error(`${requests.length} items left unprocessed`);
      }
    }
  };

  const batchGetMessages = async (ids: string[]): Promise<Map<string, Item>> => {
    const found = new Map<string, Item>();
    for (let i = 0; i < ids.length; i += BATCH_GET_SIZE) {
      let keys: Record<string, unknown>[] = ids
        .slice(i, i + BATCH_GET_SIZE)
        .map((id) => ({ pk: `M#${id}`, sk: 'M' }));
      for (let tries = 0; keys.length > 0; tries++) {
        if (tries > 0) await sleep(Math.min(1000, 50 * 2 ** tries));
        const answer = await doc.send(new BatchGetCommand({ RequestItems: { [tableName]: { Keys: keys } } }));
        for (const item of (answer.Responses?.[tableName] ?? []) as Item[])
          found.set(item.id as string, item);
        keys = answer.UnprocessedKeys?.[tableName]?.Keys ?? [];
        if (tries > 8 && keys.length > 0) throw new Error(`${keys.length} keys left unprocessed`);
      }
    }
    return found;
  };

  return {
    async appendEvents(messageId, entries, raw) {
      if (entries.length === 0) return;
      const time = decodeTime(messageId);
      const attributeNames: Record<string, string> = {
        '#id': 'id',
        '#day': 'day',
        '#expiresAt': 'expiresAt',
      };
      const values: Record<string, unknown> = {
        ':id': messageId,
        ':day': dayOf(time),
        ':exp': Math.floor(time / 1000) + retentionSeconds,
      };
      const sets = [
        '#id = if_not_exists(#id, :id)',
        '#day = if_not_exists(#day, :day)',
        '#expiresAt = if_not_exists(#expiresAt, :exp)',
      ];
      const adds: string[] = [];
      const routes = new Set<string>();
      const aliases: Item[] = [];
      entries.forEach(({ eventId, event }, i) => {
        attributeNames[`#e${i}`] = `e_${eventId}`;
        values[`:e${i}`] = event;
        sets.push(`#e${i} = :e${i}`);
        if (event.type === 'received') {
          const [first, ...more] = event.rcptTo.map((to) => to.toLowerCase());
          attributeNames['#sender'] = 'sender';
          values[':sender'] = senderKey(event.mailFrom);
          sets.push('#sender = :sender');
          if (first) {
            attributeNames['#rcpt'] = 'rcpt';
            values[':rcpt'] = first;
            sets.push('#rcpt = :rcpt');
          }
          for (const rcpt of new Set(more))
            if (rcpt !== first)
              aliases.push({
                pk: `M#${messageId}`,
                sk: `R#${rcpt}`,
                id: messageId,
                rcpt,
                expiresAt: values[':exp'],
              });
        }
        if (event.type === 'parsed' && event.subject) {
          const words = subjectWords(event.subject);
          if (words.length > 0) {
            attributeNames['#words'] = 'words';
            values[':words'] = new Set(words);
            adds.push('#words :words');
          }
        }
        if ('jobs' in event) for (const job of event.jobs) routes.add(job.route);
        if ('route' in event && event.route) routes.add(event.route);
      });
      if (routes.size > 0) {
        attributeNames['#routes'] = 'routes';
        values[':routes'] = routes;
        adds.push('#routes :routes');
      }
      if (raw) {
        attributeNames['#raw'] = 'raw';
        values[':raw'] = raw;
        sets.push('#raw = :raw');
      }
      const what = `message ${messageId}`;
      await logWrite(
        () =>
          doc.send(
            new UpdateCommand({
              TableName: tableName,
              Key: { pk: `M#${messageId}`, sk: 'M' },
              UpdateExpression: `SET ${sets.join(', ')}${adds.length > 0 ? ` ADD ${adds.join(', ')}` : ''}`,
              ExpressionAttributeNames: attributeNames,
              ExpressionAttributeValues: values,
            }),
          ),
        what,
      );
      if (aliases.length > 0) await logWrite(() => batchWrite(aliases), what);
      const followUps = entries.filter(({ event }) => isFollowUp(event));
      if (followUps.length > 0) {
        const at = followUps
          .map(({ event }) => event.at)
          .sort()
          .at(-1)!;
        const item = {
          pk: activityKey(at, messageId),
          sk: `${at}#${messageId}`,
          messageId,
          at,
          expiresAt: epochSeconds(new Date(at)) + ACTIVITY_TTL_SECONDS,
        };
        await logWrite(() => batchWrite([item]), what);
      }
    },

    async listActivity(query) {
      const oldest = Math.max(Date.parse(query.since), now().getTime() - ACTIVITY_TTL_SECONDS * 1000);
      const cursor = decodeCursor(query.cursor, (value): value is { after: string } =>
        /^\d{4}-\d\d-\d\dT\d\d:/.test(String((value as { after?: unknown })?.after)),
      );
      const after = cursor?.after ?? new Date(oldest).toISOString();
      const found: Item[] = [];
      // Where a partition's page stopped (at Limit, or at 1 MB): past the earliest such point it may hold more.
      let horizon: string | undefined;
      for (let hour = Date.parse(`${after.slice(0, 13)}:00:00Z`); hour <= now().getTime(); hour += 3600_000) {
        for (let shard = 0; shard < ACTIVITY_SHARDS; shard++) {
          const page = await doc.send(
            new QueryCommand({
              TableName: tableName,
              KeyConditionExpression: '#pk = :pk AND #sk > :after',
              ExpressionAttributeNames: { '#pk': 'pk', '#sk': 'sk' },
              ExpressionAttributeValues: {
                ':pk': `${ACTIVITY_PARTITION_PREFIX}${hourOf(hour)}#${shard}`,
                ':after': after,
              },
              Limit: query.limit,
            }),
          );
          const items = (page.Items ?? []) as Item[];
          found.push(...items);
          const stop = items.at(-1)?.sk as string | undefined;
          if (page.LastEvaluatedKey && stop && (horizon === undefined || stop < horizon)) horizon = stop;
        }
      }
      const sk = (item: Item) => item.sk as string;
      const safe = found
        .filter((item) => horizon === undefined || sk(item) <= horizon)
        .sort((a, b) => (sk(a) < sk(b) ? -1 : 1));
      const taken = safe.slice(0, query.limit);
      const last = taken.at(-1);
      return {
        items: taken
          .filter((item) => live(item))
          .map((item) => ({ messageId: item.messageId as string, at: item.at as string })),
        nextCursor:
          last && (horizon !== undefined || safe.length > taken.length)
            ? encodeCursor({ after: sk(last) })
            : null,
      };
    },

    async getMessage(id) {
      const item = live(
        (await doc.send(new GetCommand({ TableName: tableName, Key: { pk: `M#${id}`, sk: 'M' } }))).Item as
          | Item
          | undefined,
      );
      return item ? messageFromItem(item) : undefined;
    },

    async listMessages(query, at) {
      const oldest = Math.max(
        query.since ? Date.parse(query.since) : 0,
        at.getTime() - retentionSeconds * 1000,
      );
      const newest = query.until ? Date.parse(query.until) : at.getTime();
      const cursor = decodeCursor(
        query.cursor,
        (value): value is { before: string } =>
          typeof (value as { before?: unknown })?.before === 'string' &&
          /^[0-9A-HJKMNP-TV-Z]{26}$/.test((value as { before: string }).before),
      );
      // Ids strictly below `before` and within [oldest, newest]; the index chosen by the most selective filter.
      let before = cursor?.before ?? `${ulidCeiling(newest)}~`;
      const floor = ulidFloor(oldest);
      const [indexName, partitionsFor]: [string, (before: string) => string[]] = query.recipient
        ? ['byRecipient', () => [query.recipient!]]
        : query.sender
          ? ['bySender', () => [query.sender!]]
          : [
              'byDay',
              (before) => {
                const days: string[] = [];
                const top = Math.min(newest, before.length === 26 ? decodeTime(before) : newest);
                for (
                  let day = Date.parse(dayOf(top));
                  day >= Date.parse(dayOf(oldest));
                  day -= DAY_SECONDS * 1000
                )
                  days.push(dayOf(day));
                return days;
              },
            ];
      const attribute = CONTROL_TABLE_INDEXES[indexName as keyof typeof CONTROL_TABLE_INDEXES];
      const items: StoredMessage[] = [];
      let examined = 0;
      for (const partition of partitionsFor(before)) {
        let start: Record<string, unknown> | undefined;
        do {
          const page = await doc.send(
            new QueryCommand({
              TableName: tableName,
              IndexName: indexName,
              KeyConditionExpression: '#pk = :pk AND #id BETWEEN :floor AND :top',
              ExpressionAttributeNames: { '#pk': attribute, '#id': 'id' },
              ExpressionAttributeValues: { ':pk': partition, ':floor': floor, ':top': before },
              ScanIndexForward: false,
              Limit: Math.min(BATCH_GET_SIZE, MAX_EXAMINED_PER_PAGE - examined),
              ExclusiveStartKey: start,
            }),
          );
          start = page.LastEvaluatedKey;
          const ids = [...new Set((page.Items ?? []).map((item) => item.id as string))].filter(
            (id) => id < before,
          );
          const found = await batchGetMessages(ids);
          for (const id of ids) {
            examined++;
            before = id;
            const item = live(found.get(id));
            if (!item) continue;
            const message = messageFromItem(item);
            if (!matchesQuery(message, query)) continue;
            items.push(message);
            if (items.length === query.limit) return { items, nextCursor: encodeCursor({ before: id }) };
          }
          // Read budget spent: the caller asks again from here, as DynamoDB itself does with a filter.
          if (examined >= MAX_EXAMINED_PER_PAGE) return { items, nextCursor: encodeCursor({ before }) };
        } while (start);
      }
      return { items, nextCursor: null };
    },

    async putRefusals(refusals) {
      const items = new Map<string, Item>();
      for (const refusal of refusals) {
        const minute = refusal.at.slice(0, 16);
        const hash = createHash('sha256')
          .update(`${refusal.remoteAddress}\0${refusal.recipient}`)
          .digest('hex');
        const sk = `${minute}#${hash.slice(0, 16)}`;
        items.set(sk, {
          pk: 'REFUSALS',
          sk,
          ...refusal,
          recipientKey: refusal.recipient.toLowerCase(),
          expiresAt: epochSeconds(new Date(refusal.at)) + refusalRetentionSeconds,
        });
      }
      await logWrite(() => batchWrite([...items.values()]), `${items.size} refusals`);
    },

    async listRefusals(query) {
      const since = new Date(
        Math.max(Date.parse(query.since), now().getTime() - refusalRetentionSeconds * 1000),
      ).toISOString();
      const cursor = decodeCursor(query.cursor, isRefusalCursor);
      const recipient = query.recipient?.toLowerCase();
      const bottom = since.slice(0, 16);
      const top = cursor ? `${cursor.minute}#~` : '~';
      const items: Refusal[] = [];
      if (top < bottom) return { items, nextCursor: null };
      let examined = 0;
      const minuteOf = (item: RefusalPosition) => item.sk.slice(0, 16);
      /** Takes one whole minute, newest first; a page once it is full or the read budget is spent. */
      const take = (minute: (Item & RefusalPosition)[], next: string | undefined) => {
        minute.sort(newestFirst);
        for (const [i, item] of minute.entries()) {
          examined++;
          if (cursor?.after && newestFirst(item, cursor.after) <= 0) continue;
          if (item.at < since || (recipient && item.recipientKey !== recipient)) continue;
          items.push({
            at: item.at,
            recipient: item.recipient as string,
            mailFrom: item.mailFrom as string,
            remoteAddress: item.remoteAddress as string,
            reply: item.reply as string,
          });
          if (items.length === query.limit) {
            const after = { at: item.at, sk: item.sk };
            const rest: RefusalCursor | undefined =
              i < minute.length - 1 ? { minute: minuteOf(item), after } : next ? { minute: next } : undefined;
            return { items, nextCursor: rest ? encodeCursor(rest) : null };
          }
        }
        // Read budget spent (a recipient never refused would read every refusal kept): the caller
        // asks again from here, as with listMessages.
        if (next && examined >= MAX_EXAMINED_PER_PAGE)
          return { items, nextCursor: encodeCursor({ minute: next }) };
        return undefined;
      };
      let minute: (Item & RefusalPosition)[] = [];
      let start: Record<string, unknown> | undefined;
      do {
        const page = await doc.send(
          new QueryCommand({
            TableName: tableName,
            KeyConditionExpression: '#pk = :pk AND #sk BETWEEN :bottom AND :top',
            ExpressionAttributeNames: names('pk', 'sk'),
            ExpressionAttributeValues: { ':pk': 'REFUSALS', ':bottom': bottom, ':top': top },
            ScanIndexForward: false,
            Limit: REFUSALS_PER_QUERY,
            ExclusiveStartKey: start,
          }),
        );
        start = page.LastEvaluatedKey;
        for (const item of (page.Items ?? []) as (Item & RefusalPosition)[]) {
          if (minute[0] && minuteOf(item) !== minuteOf(minute[0])) {
            const full = take(minute, minuteOf(item));
            if (full) return full;
            minute = [];
          }
          minute.push(item);
        }
      } while (start);
      return take(minute, undefined) ?? { items, nextCursor: null };
    },

    async pageRoutes(limit, cursor) {
      const { items, nextCursor } = await page('ROUTE', limit, cursor);
      return { items: items.map(routeFromItem), nextCursor };
    },

    async getRoute(id) {
      const item = live(await getItem('ROUTE', id));
      return item ? routeFromItem(item) : undefined;
    },

    async createRoute(route) {
      const item = await conditional(
        () =>
          update({
            Key: { pk: 'ROUTE', sk: route.route.id },
            UpdateExpression:
              'SET #route = :route, #secrets = :secrets, #createdAt = :createdAt, #updatedAt = :updatedAt, #rev = if_not_exists(#rev, :zero) + :one REMOVE #deleted, #expiresAt',
            ConditionExpression: 'attribute_not_exists(#pk) OR attribute_exists(#deleted)',
            ExpressionAttributeNames: names(
              'pk',
              'route',
              'secrets',
              'createdAt',
              'updatedAt',
              'rev',
              'deleted',
              'expiresAt',
            ),
            ExpressionAttributeValues: {
              ':route': route.route,
              ':secrets': route.secrets,
              ':createdAt': route.createdAt,
              ':updatedAt': route.updatedAt,
              ':zero': 0,
              ':one': 1,
            },
          }),
        `route ${route.route.id} exists`,
      );
      const stored = routeFromItem(item);
      await recordChange('route', route.route.id, stored.revision, stored);
      return stored;
    },

    async updateRoute(route, expectedRevision) {
      const item = await conditional(
        () =>
          update({
            Key: { pk: 'ROUTE', sk: route.route.id },
            UpdateExpression:
              'SET #route = :route, #secrets = :secrets, #updatedAt = :updatedAt, #rev = #rev + :one',
            ConditionExpression:
              'attribute_exists(#pk) AND attribute_not_exists(#deleted) AND #rev = :expected',
            ExpressionAttributeNames: names('pk', 'route', 'secrets', 'updatedAt', 'rev', 'deleted'),
            ExpressionAttributeValues: {
              ':route': route.route,
              ':secrets': route.secrets,
              ':updatedAt': route.updatedAt,
              ':one': 1,
              ':expected': expectedRevision,
            },
          }),
        `route ${route.route.id} changed since revision ${expectedRevision}`,
      );
      const stored = routeFromItem(item);
      await recordChange('route', route.route.id, stored.revision, stored);
      return stored;
    },

    async deleteRoute(id, expectedRevision) {
      const item = await conditional(
        () => tombstone('ROUTE', id, expectedRevision),
        `route ${id} changed since revision ${expectedRevision}`,
      );
      await recordChange('route', id, item.rev as number, null);
    },

    async listDomains() {
      const items = await queryAll(doc, {
        TableName: tableName,
        KeyConditionExpression: '#pk = :pk',
        FilterExpression: 'attribute_not_exists(#deleted)',
        ExpressionAttributeNames: names('pk', 'deleted'),
        ExpressionAttributeValues: { ':pk': 'DOMAIN' },
      });
      return items.map(domainFromItem);
    },

    async pageDomains(limit, cursor) {
      const { items, nextCursor } = await page('DOMAIN', limit, cursor);
      return { items: items.map(domainFromItem), nextCursor };
    },

    async getDomain(name) {
      const item = live(await getItem('DOMAIN', name));
      return item ? domainFromItem(item) : undefined;
    },

    async claimDomain(domain, at) {
      const item = await conditional(
        () =>
          update({
            Key: { pk: 'DOMAIN', sk: domain.name },
            UpdateExpression:
              'SET #status = :pending, #token = :token, #claimedBy = :claimedBy, #createdAt = :createdAt, #claimExpiresAt = :claimExpiresAt, #verifiedAt = :null, #rev = if_not_exists(#rev, :zero) + :one REMOVE #deleted, #expiresAt',
            // Free, removed, or a pending claim nobody proved in time; never a verified domain.
            ConditionExpression:
              'attribute_not_exists(#pk) OR attribute_exists(#deleted) OR (#status = :pending AND #claimExpiresAt < :now)',
            ExpressionAttributeNames: names(
              'pk',
              'status',
              'token',
              'claimedBy',
              'createdAt',
              'claimExpiresAt',
              'verifiedAt',
              'rev',
              'deleted',
              'expiresAt',
            ),
            ExpressionAttributeValues: {
              ':pending': 'pending',
              ':token': domain.token,
              ':claimedBy': domain.claimedBy,
              ':createdAt': domain.createdAt,
              ':claimExpiresAt': domain.claimExpiresAt,
              ':null': null,
              ':zero': 0,
              ':one': 1,
              ':now': at.toISOString(),
            },
          }),
        `domain ${domain.name} is already claimed`,
      );
      const stored = domainFromItem(item);
      await recordChange('domain', stored.name, stored.revision, stored);
      return stored;
    },

    async markDomainVerified(name, token, at) {
      const item = await conditional(
        () =>
          update({
            Key: { pk: 'DOMAIN', sk: name },
            UpdateExpression: 'SET #status = :verified, #verifiedAt = :at, #rev = #rev + :one',
            ConditionExpression: '#status = :pending AND #token = :token AND attribute_not_exists(#deleted)',
            ExpressionAttributeNames: names('status', 'verifiedAt', 'rev', 'token', 'deleted'),
            ExpressionAttributeValues: {
              ':verified': 'verified',
              ':pending': 'pending',
              ':at': at,
              ':token': token,
              ':one': 1,
            },
          }),
        `domain ${name} was claimed again or removed`,
      );
      const stored = domainFromItem(item);
      await recordChange('domain', name, stored.revision, stored);
      return stored;
    },

    async deleteDomain(name) {
      const item = await conditional(() => tombstone('DOMAIN', name), `domain ${name} does not exist`);
      await recordChange('domain', name, item.rev as number, null);
    },

    async firstMessageWith(fingerprint, messageId) {
      const key = { pk: `${DEDUPE_PARTITION_PREFIX}${fingerprint}`, sk: 'D' };
      const at = epochSeconds(now());
      try {
        // A marker past its TTL may still be there (TTL deletion lags, dynalite has none): it is free.
        await doc.send(
          new PutCommand({
            TableName: tableName,
            Item: { ...key, messageId, expiresAt: at + DEDUPE_TTL_SECONDS },
            ConditionExpression: 'attribute_not_exists(#pk) OR #expiresAt <= :now OR #messageId = :id',
            ExpressionAttributeNames: names('pk', 'expiresAt', 'messageId'),
            ExpressionAttributeValues: { ':now': at, ':id': messageId },
          }),
        );
        return messageId;
      } catch (error) {
        if (!isConflict(error)) throw error;
      }
      const first = await getItem(key.pk, key.sk);
      return (first?.messageId as string | undefined) ?? messageId;
    },
    async createKey(key) {
      await conditional(
        () =>
          doc.send(
            new PutCommand({
              TableName: tableName,
              Item: { pk: 'KEY', sk: key.id, ...key },
              ConditionExpression: 'attribute_not_exists(#pk)',
              ExpressionAttributeNames: names('pk'),
            }),
          ),
        `key ${key.id} exists`,
      );
    },

    async getKey(id) {
      const item = await getItem('KEY', id);
      return item ? keyFromItem(item) : undefined;
    },

    async listKeys() {
      const items = await queryAll(doc, {
        TableName: tableName,
        KeyConditionExpression: '#pk = :pk',
        ExpressionAttributeNames: names('pk'),
        ExpressionAttributeValues: { ':pk': 'KEY' },
      });
      return items.map(keyFromItem);
    },

    async deleteKey(id) {
      await conditional(
        () =>
          doc.send(
            new DeleteCommand({
              TableName: tableName,
              Key: { pk: 'KEY', sk: id },
              ConditionExpression: 'attribute_exists(#pk)',
              ExpressionAttributeNames: names('pk'),
            }),
          ),
        `key ${id} does not exist`,
      );
    },

    async changesSince(afterId) {
      const items = await queryAll(doc, {
        TableName: tableName,
        KeyConditionExpression: '#pk = :pk AND #sk > :after',
        ExpressionAttributeNames: names('pk', 'sk'),
        ExpressionAttributeValues: { ':pk': 'CHANGE', ':after': afterId },
      });
      return items.map((item): Change => {
        const base = { id: item.sk as string, key: item.key as string, revision: item.rev as number };
        const state = (item.state as Item | null) ?? null;
        return item.kind === 'route'
          ? { ...base, kind: 'route', route: state && (state as unknown as StoredRoute) }
          : { ...base, kind: 'domain', domain: state && (state as unknown as StoredDomain) };
      });
    },
  };

  /** Live items of one partition in key order after `cursor` (a sort key), at most `limit`. */
  async function page(pk: string, limit: number, cursor?: string): Promise<Page<Item>> {
    const items: Item[] = [];
    let after = cursor;
    let more = true;
    while (more && items.length < limit) {
      const answer = await doc.send(
        new QueryCommand({
          TableName: tableName,
          KeyConditionExpression: after === undefined ? '#pk = :pk' : '#pk = :pk AND #sk > :after',
          FilterExpression: 'attribute_not_exists(#deleted)',
          ExpressionAttributeNames: {
            '#pk': 'pk',
            '#deleted': 'deleted',
            ...(after === undefined ? {} : { '#sk': 'sk' }),
          },
          ExpressionAttributeValues: { ':pk': pk, ...(after === undefined ? {} : { ':after': after }) },
          Limit: limit - items.length,
        }),
      );
      items.push(...((answer.Items ?? []) as Item[]));
      more = answer.LastEvaluatedKey !== undefined;
      if (answer.LastEvaluatedKey) after = answer.LastEvaluatedKey.sk as string;
    }
    return { items, nextCursor: more ? (items.at(-1)?.sk as string) : null };
  }

  /** Marks an entity deleted, keeping its revision for a day so a change feed reader orders a re-creation after it. */
  function tombstone(pk: string, sk: string, expectedRevision?: number) {
    return update({
      Key: { pk, sk },
      UpdateExpression: 'SET #deleted = :true, #rev = #rev + :one, #expiresAt = :exp',
      ConditionExpression: `attribute_exists(#pk) AND attribute_not_exists(#deleted)${expectedRevision === undefined ? '' : ' AND #rev = :expected'}`,
      ExpressionAttributeNames: names('pk', 'deleted', 'rev', 'expiresAt'),
      ExpressionAttributeValues: {
        ':true': true,
        ':one': 1,
        ':exp': epochSeconds(now()) + TOMBSTONE_TTL_SECONDS,
        ...(expectedRevision === undefined ? {} : { ':expected': expectedRevision }),
      },
    });
  }
}

function keyFromItem(item: Item): StoredKey {
  return {
    id: item.id as string,
    name: item.name as string,
    scope: item.scope as StoredKey['scope'],
    hash: item.hash as string,
    createdAt: item.createdAt as string,
  };
}
