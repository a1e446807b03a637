import type { JobRef, MessageStatus, TimelineEvent } from './schemas.ts';

/** `waiting`: a try failed and the next is scheduled (`retry_scheduled`). */
type JobState = 'pending' | 'trying' | 'waiting' | 'delivered' | 'dead';

const jobKey = (job: Pick<JobRef, 'webhookId' | 'endpoint'>) => `${job.webhookId} ${job.endpoint}`;

/**
 * A message's status, derived from its timeline (oldest first) alone, so every reader agrees and
 * no writer has to read before it writes. Each (route, endpoint) job is followed on its own:
 * queued by `parsed`, `retried` or `replayed`; a `delivered` stays delivered even if an
 * at-least-once duplicate tries again; a `dead_lettered` job comes back when a redrive tries it.
 *
 * `received` until parsed; `parsed` while no job has been tried (or none was queued); then
 * `delivering` until every job is delivered (`delivered`) or in the DLQ (`failed` when all are,
 * `partially_delivered` when only some are). A message with no job because its routes hold it
 * back is `quarantined`.
 */
export function deriveStatus(timeline: readonly TimelineEvent[]): MessageStatus {
  const { parsed, quarantined, tried, jobs } = replayJobs(timeline);
  if (jobs.size === 0) return quarantined ? 'quarantined' : parsed ? 'parsed' : 'received';
  let delivered = 0;
  let dead = 0;
  for (const { state } of jobs.values()) {
    if (state === 'delivered') delivered++;
    else if (state === 'dead') dead++;
  }
  if (delivered === jobs.size) return 'delivered';
  if (delivered + dead === jobs.size) return delivered > 0 ? 'partially_delivered' : 'failed';
  return tried || delivered + dead > 0 ? 'delivering' : 'parsed';
}

/** Each (route, endpoint) job's state after the timeline, and what happened to the message as a whole. */
function replayJobs(timeline: readonly TimelineEvent[]) {
  let parsed = false;
  let quarantined = false;
  let tried = false;
  const jobs = new Map<string, { route: string; state: JobState }>();
  const settle = (job: JobRef, state: JobState) => {
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
        // An explicit retry sends again even what was delivered.
        for (const job of event.jobs) jobs.set(jobKey(job), { route: job.route, state: 'pending' });
        break;
      case 'replayed':
        for (const job of jobs.values())
          if (event.route === null || job.route === event.route) job.state = 'pending';
        break;
      case 'quarantined':
        quarantined = true;
        break;
    }
  }
  return { parsed, quarantined, tried, jobs };
}

/**
 * Whether an event follows up a message after its first pass: a retry scheduled or tried, a dead
 * letter, a retry, release or replay asked. The store records these in its activity feed, so a
 * reader that did not see a message arrive learns that it moves again; the first pass (received,
 * parsed, the first try and its answer, quarantined) is found by listing messages by arrival.
 */
export function isFollowUp(event: TimelineEvent): boolean {
  switch (event.type) {
    case 'retry_scheduled':
    case 'dead_lettered':
    case 'retried':
    case 'replayed':
      return true;
    case 'attempt':
      return event.attempt > 1;
    default:
      return false;
  }
}

/**
 * Whether nothing more happens to a message until a scheduled retry runs or delivery is asked
 * again: each job delivered, dead-lettered or waiting on its `retry_scheduled`. Each of those next
 * steps is a follow-up event ({@link isFollowUp}), which the store's activity list shows, so a reader following the
 * message can wait for it there instead of reading the message again.
 */
export function awaitsFollowUp(timeline: readonly TimelineEvent[]): boolean {
  const { jobs } = replayJobs(timeline);
  if (jobs.size === 0) return false;
  for (const { state } of jobs.values()) if (state === 'pending' || state === 'trying') return false;
  return true;
}
