// The dev inbox page: new webhooks and failed deliveries arrive over server-sent events and are
// inserted as the server renders them (escaped there); search asks the server which cards match.
const list = document.getElementById('list');
const count = document.getElementById('count');
const live = document.getElementById('live');
const search = document.getElementById('search');
let query = '';

function insert(html) {
  document.getElementById('empty')?.remove();
  const fragment = document.createRange().createContextualFragment(html);
  list.prepend(fragment);
}

async function insertFrom(url) {
  const response = await fetch(url);
  if (response.ok) insert(await response.text());
}

async function applySearch() {
  const cards = list.querySelectorAll('.card');
  if (!query) {
    for (const card of cards) card.hidden = false;
    return;
  }
  const { seqs, failures } = await (await fetch(`/api/search?q=${encodeURIComponent(query)}`)).json();
  const shown = new Set([...seqs.map((seq) => `m${seq}`), ...failures.map((index) => `f${index}`)]);
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
events.addEventListener('webhook', async (event) => {
  const { seq } = JSON.parse(event.data);
  if (document.getElementById(`m${seq}`)) return;
  await insertFrom(`/fragments/messages/${seq}`);
  await Promise.all([refreshCount(), applySearch()]);
});
events.addEventListener('failure', async (event) => {
  const { index } = JSON.parse(event.data);
  if (document.getElementById(`f${index}`)) return;
  await insertFrom(`/fragments/failures/${index}`);
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

document.getElementById('clear').addEventListener('click', async () => {
  if (confirm('Remove every webhook from the dev inbox?')) await fetch('/api/webhooks', { method: 'DELETE' });
});
