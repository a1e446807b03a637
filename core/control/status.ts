import type { JobRef, MessageStatus, TimelineEvent } from './schemas.ts';

/** `waiting`: a try failed and the next is scheduled (`retry_scheduled`). */
type JobState = 'pending' | 'trying' | 'waiting' | 'delivered' | 'dead';

const jobKey = (job: Pick<JobRef, 'webhookId' | 'endpoint'>) => `${job.webhookId} ${job.endpoint}`;

/**
 * A retry or replay whose jobs the log does not show yet: the route it covers (null: every route)
 * and the event that shows them, the `parsed` event of the parse it asked, or (a replay, which
 * parses in the CLI and logs no `parsed`) a job event of one of them.
 */
interface Asked {
  readonly route: string | null;
  readonly shownBy: 'parsed' | 'job';
}

/**
 * A message's status, derived from its timeline (oldest first) alone, so every reader agrees and
 * no writer has to read before it writes. Each (route, endpoint) job is followed on its own:
 * queued by `parsed` or a `retried` that lists it; a `delivered` stays delivered even if an
 * at-least-once duplicate tries again; a `dead_lettered` job comes back when a redrive tries it.
 * A retry through parse (`retried` with `reparse`) or a `replayed` builds the jobs of its routes
 * again by the routes in force: their earlier jobs are superseded, and the message is not settled
 * until the new ones show.
 *
 * `received` until parsed; `parsed` while no job has been tried (or none was queued); then
 * `delivering` until every job is delivered (`delivered`) or in the DLQ (`failed` when all are,
 * `partially_delivered` when only some are). A recipient no route took any more at parse (in the
 * inbound DLQ as `unrouted`) counts as a job in the DLQ, and a message parse gave up on (in the
 * inbound DLQ, `parse_failed`) is `failed` until a later parse. A message with no job because its
 * routes hold it back is `quarantined`.
 */
export function deriveStatus(timeline: readonly TimelineEvent[]): MessageStatus {
  const { parsed, parseFailed, held, tried, jobs, unrouted, asked } = replayJobs(timeline);
  if (jobs.size + unrouted === 0 && !asked) {
    if (parseFailed) return 'failed';
    return held.size > 0 ? 'quarantined' : parsed ? 'parsed' : 'received';
  }
  let delivered = 0;
  let dead = unrouted;
  for (const { state } of jobs.values()) {
    if (state === 'delivered') delivered++;
    else if (state === 'dead') dead++;
  }
  const all = jobs.size + unrouted;
  if (!asked && delivered === all) return 'delivered';
  if (!asked && delivered + dead === all) return delivered > 0 ? 'partially_delivered' : 'failed';
  return tried || delivered + dead > 0 ? 'delivering' : parsed ? 'parsed' : 'received';
}

/**
 * Each (route, endpoint) job's state after the timeline, the routes whose copy is held back, what
 * happened to the message as a whole, and the retry or replay whose jobs are still to show.
 */
function replayJobs(timeline: readonly TimelineEvent[]) {
  let parsed = false;
  /** Parse gave up and the message is in the inbound DLQ, until a later parse succeeds. */
  let parseFailed = false;
  let tried = false;
  /** Recipients the latest parse found no route for (it lists them whatever route it was asked for). */
  let unrouted = 0;
  let asked: Asked | undefined;
  const jobs = new Map<string, { route: string; state: JobState }>();
  const held = new Set<string>();
  const covers = (route: string | null, job: string) => route === null || route === job;
  /** A new pass over `route`'s deliveries: what the earlier passes queued or held for it no longer counts. */
  const supersede = (next: Asked) => {
    for (const [key, job] of jobs) if (covers(next.route, job.route)) jobs.delete(key);
    for (const route of held) if (covers(next.route, route)) held.delete(route);
    asked = next;
  };
  const settle = (job: JobRef, state: JobState) => {
    if (asked?.shownBy === 'job' && covers(asked.route, job.route)) asked = undefined;
    const current = jobs.get(jobKey(job));
    if (current?.state === 'delivered' && state !== 'delivered') return;
    jobs.set(jobKey(job), { route: job.route, state });
  };
  for (const event of timeline) {
    switch (event.type) {
      case 'received':
        break;
      case 'parsed':
        parsed = true;
        parseFailed = false;
        unrouted = event.unrouted.length;
        if (asked?.shownBy === 'parsed') asked = undefined;
        // A job already known was tried before this event was logged (the writers are independent).
        for (const job of event.jobs)
          if (!jobs.has(jobKey(job))) jobs.set(jobKey(job), { route: job.route, state: 'pending' });
        break;
      case 'attempt':
        tried = true;
        settle(event, 'trying');
        break;
      case 'retry_scheduled':
        settle(event, 'waiting');
        break;
      case 'delivered':
        tried = true;
        settle(event, 'delivered');
        break;
      case 'dead_lettered':
        settle(event, 'dead');
        break;
      case 'retried':
        if (event.reparse) supersede({ route: event.route, shownBy: 'parsed' });
        // An explicit retry sends again even what was delivered.
        for (const job of event.jobs) jobs.set(jobKey(job), { route: job.route, state: 'pending' });
        break;
      case 'replayed':
        supersede({ route: event.route, shownBy: 'job' });
        break;
      case 'quarantined':
        held.add(event.route);
        break;
      case 'parse_failed':
        parseFailed = true;
        break;
    }
  }
  return { parsed, parseFailed, held, tried, jobs, unrouted, asked };
}

/**
 * Whether an event follows up a message after its first pass: a retry scheduled or tried, a dead
 * letter, parse given up, a retry, release or replay asked. The store records these in its
 * activity feed, so a reader that did not see a message arrive learns that it moves again; the
 * first pass (received, parsed, the first try and its answer, quarantined) is found by listing
 * messages by arrival.
 */
export function isFollowUp(event: TimelineEvent): boolean {
  switch (event.type) {
    case 'retry_scheduled':
    case 'dead_lettered':
    case 'retried':
    case 'replayed':
    case 'parse_failed':
      return true;
    case 'attempt':
      return event.attempt > 1;
    default:
      return false;
  }
}

/**
 * Whether nothing more happens to a message until a scheduled retry runs or delivery is asked
 * again: each job delivered, dead-lettered or waiting on its `retry_scheduled`, and no retry or
 * replay with jobs still to show. Each of those next steps is a follow-up event ({@link isFollowUp}),
 * which the store's activity list shows, so a reader following the message can wait for it there
 * instead of reading the message again.
 */
export function awaitsFollowUp(timeline: readonly TimelineEvent[]): boolean {
  const { jobs, asked } = replayJobs(timeline);
  if (jobs.size === 0 || asked) return false;
  for (const { state } of jobs.values()) if (state === 'pending' || state === 'trying') return false;
  return true;
}
