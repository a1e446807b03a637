// The dev inbox page: new webhooks and failed deliveries arrive over server-sent events and are
// inserted as the server renders them (escaped there); search asks the server which cards match.
const list = document.getElementById('list');
const count = document.getElementById('count');
const live = document.getElementById('live');
const search = document.getElementById('search');
let query = search.value.trim();
// The last webhook and failure numbers the page shows, and which start of the inbox rendered it.
let knownSeq = Number(list.dataset.received);
let knownFailure = Number(list.dataset.failures);
const started = list.dataset.started;
// More missed than this while disconnected, and a reload is quicker than fetching each card.
const MAX_CATCH_UP = 50;

// Newest first, by the time each card shows (ISO 8601, so text order is time order).
function insert(html) {
  document.getElementById('empty')?.remove();
  const card = document.createRange().createContextualFragment(html).firstElementChild;
  const at = card.querySelector('time')?.textContent ?? '';
  const older = [...list.querySelectorAll('.card')].find(
    (other) => (other.querySelector('time')?.textContent ?? '') < at,
  );
  list.insertBefore(card, older ?? null);
}

// An event and the catch-up after a reconnect may bring the same card: it is shown once.
async function show(id, url) {
  if (document.getElementById(id)) return;
  const response = await fetch(url);
  // A 404: dropped beyond the inbox's limit, or cleared, meanwhile.
  if (response.ok && !document.getElementById(id)) insert(await response.text());
}

async function showWebhook(seq) {
  knownSeq = Math.max(knownSeq, seq);
  await show(`m${seq}`, `/fragments/messages/${seq}`);
}

async function showFailure(seq) {
  knownFailure = Math.max(knownFailure, seq);
  await show(`f${seq}`, `/fragments/failures/${seq}`);
}

async function applySearch() {
  const cards = list.querySelectorAll('.card');
  if (!query) {
    for (const card of cards) card.hidden = false;
    return;
  }
  const { seqs, failures } = await (await fetch(`/api/search?q=${encodeURIComponent(query)}`)).json();
  const shown = new Set([...seqs.map((seq) => `m${seq}`), ...failures.map((seq) => `f${seq}`)]);
  for (const card of cards) card.hidden = !shown.has(card.id);
}

async function refreshCount() {
  const { received, kept } = await (await fetch('/api/webhooks/count')).json();
  count.firstChild.textContent = `${received} webhook(s) received, ${kept} kept, newest first · `;
}

const events = new EventSource('/api/events');
events.addEventListener('open', () => {
  live.textContent = 'live';
});
events.addEventListener('error', () => {
  live.textContent = 'reconnecting…';
});
// Sent on each (re)connect: what arrived while the page loaded or was disconnected is fetched.
events.addEventListener('hello', async (event) => {
  const hello = JSON.parse(event.data);
  const missed = hello.received - knownSeq + (hello.failures - knownFailure);
  // Another start of the inbox numbers its failures afresh: only a reload shows them right.
  if (hello.started !== started || missed > MAX_CATCH_UP) {
    location.reload();
    return;
  }
  const from = { seq: knownSeq, failure: knownFailure };
  for (let seq = from.seq + 1; seq <= hello.received; seq++) await showWebhook(seq);
  for (let seq = from.failure + 1; seq <= hello.failures; seq++) await showFailure(seq);
  await Promise.all([refreshCount(), applySearch()]);
});
events.addEventListener('webhook', async (event) => {
  await showWebhook(JSON.parse(event.data).seq);
  await Promise.all([refreshCount(), applySearch()]);
});
events.addEventListener('failure', async (event) => {
  await showFailure(JSON.parse(event.data).seq);
  await applySearch();
});
events.addEventListener('clear', async () => {
  list.replaceChildren();
  await refreshCount();
});

let typing;
search.addEventListener('input', () => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    query = search.value.trim();
    void applySearch();
  }, 150);
});
if (query) void applySearch();

document.getElementById('clear').addEventListener('click', async () => {
  if (confirm('Remove every webhook from the dev inbox?')) await fetch('/api/webhooks', { method: 'DELETE' });
});
