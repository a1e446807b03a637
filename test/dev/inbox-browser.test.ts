import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { newMessageId } from '../../core/index.ts';
import { type Inbox, startInbox } from '../../dev/index.ts';
import { INBOX_SECRET, postSigned } from './inbox-helpers.ts';

// Debian's chromium, driven by playwright-core (which brings no browser of its own).
const CHROMIUM = '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const PDF = Buffer.from('%PDF-1.4\n% the invoice\n%%EOF\n');
// A 1×1 PNG, shown inline through its Content-ID.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
);

function webhook(subject: string, text: string): string {
  return JSON.stringify({
    type: 'email.received',
    version: 1,
    id: newMessageId(),
    receivedAt: new Date().toISOString(),
    route: { id: 'dev-inbox', recipients: ['support+t9@example.test'] },
    message: {
      subject,
      from: [{ name: 'Dana', address: 'dana@customer.test' }],
      to: [{ name: '', address: 'support+t9@example.test' }],
      text,
      strippedText: text,
      html: `<p>${text}</p><img src="cid:logo@customer.test" alt="logo"><script>parent.document.title = 'hacked'</script>`,
      mailboxHash: 't9',
      attachments: [
        {
          filename: 'invoice-2024-0117.pdf',
          contentType: 'application/pdf',
          size: PDF.length,
          sha256: '0'.repeat(64),
          content: PDF.toString('base64'),
        },
        {
          filename: 'logo.png',
          contentType: 'image/png',
          size: PNG.length,
          sha256: '0'.repeat(64),
          disposition: 'inline',
          contentId: 'logo@customer.test',
          content: PNG.toString('base64'),
        },
      ],
    },
    auth: { spf: { result: 'pass' }, dkim: [], dmarc: { result: 'pass' }, arc: { result: 'none' } },
    warnings: [],
  });
}

describe('dev inbox in a real browser (headless Chromium)', () => {
  let inbox: Inbox;
  let dataDir: string;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(
      existsSync(CHROMIUM),
      `${CHROMIUM} is missing: install Debian's browser with "apt-get install -y chromium" (CI's .ci/run does)`,
    );
    dataDir = await mkdtemp(join(tmpdir(), 'mailbridge-inbox-browser-'));
    inbox = await startInbox({ port: 0, secrets: [INBOX_SECRET], dataDir });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
    page = await browser.newPage({ acceptDownloads: true });
    page.on('pageerror', (error) => pageErrors.push(error.message));
    page.on('console', (message) => {
      if (message.type() === 'error') pageErrors.push(message.text());
    });
  });
  after(async () => {
    await browser?.close();
    await inbox?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it('loads the page and connects to the live event stream', async () => {
    await page.goto(`${inbox.url}/`);
    assert.equal(await page.title(), 'mailbridge dev inbox');
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 10_000 });
    assert.match((await page.locator('#empty').textContent()) ?? '', /Nothing yet/);
  });

  it('shows a webhook POSTed to the inbox live, without reloading', async () => {
    await page.evaluate(() => {
      (globalThis as unknown as { marker: string }).marker = 'same page';
    });
    await postSigned(inbox, webhook('Printer on the 3rd floor is on fire', 'It jams on page two.'));
    const card = page.locator('#m1');
    await card.waitFor({ timeout: 10_000 });
    assert.equal(await card.locator('.subject').textContent(), 'Printer on the 3rd floor is on fire');
    assert.match((await card.textContent()) ?? '', /It jams on page two\./);
    // The count is refreshed after the card is shown.
    await page
      .locator('#count', { hasText: /^1 webhook\(s\) received, 1 kept/ })
      .waitFor({ timeout: 10_000 });
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { marker?: string }).marker),
      'same page',
    );
  });

  it('finds a webhook by search and hides the others', async () => {
    await postSigned(inbox, webhook('Invoice 2024-0117 is wrong', 'Twelve seats, we have ten.'));
    await page.locator('#m2').waitFor({ timeout: 10_000 });
    await page.fill('#search', 'seats');
    await page.locator('#m1').waitFor({ state: 'hidden', timeout: 10_000 });
    assert.equal(await page.locator('#m2').isVisible(), true);
    await page.fill('#search', 'printer fire');
    await page.locator('#m2').waitFor({ state: 'hidden', timeout: 10_000 });
    assert.equal(await page.locator('#m1').isVisible(), true);
    await page.fill('#search', '');
    await page.locator('#m2').waitFor({ state: 'visible', timeout: 10_000 });
  });

  it('downloads an attachment', async () => {
    const [download] = await Promise.all([
      page.waitForEvent('download', { timeout: 10_000 }),
      page.locator('#m1 a.attachment').first().click(),
    ]);
    assert.equal(download.suggestedFilename(), 'invoice-2024-0117.pdf');
    assert.deepEqual(await readFile(await download.path()), PDF);
  });

  it('opens a message with its HTML sandboxed: the message’s script does not run', async () => {
    await page.locator('#m1 a.subject').click();
    await page.waitForURL(/\/messages\/1$/);
    const frame = page.frameLocator('iframe[sandbox]');
    assert.equal(await frame.locator('p').textContent(), 'It jams on page two.');
    // The cid: image loads from the inbox (polled: it may still be on its way).
    const logo = frame.locator('img');
    let width = 0;
    for (let tries = 0; tries < 50 && width !== 1; tries++) {
      width = await logo.evaluate((image) => (image as unknown as { naturalWidth: number }).naturalWidth);
      if (width !== 1) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(width, 1, 'the cid: image is shown');
    assert.notEqual(await page.title(), 'hacked');
    // Chromium reports the script it refused to run.
    const blocked = pageErrors.filter((error) =>
      /Blocked script execution in '.*\/messages\/1\/html'/.test(error),
    );
    assert.equal(blocked.length, 1, pageErrors.join('\n'));
    pageErrors.splice(pageErrors.indexOf(blocked[0]!), 1);
    await page.goBack();
  });

  it('clears the inbox from the page', async () => {
    page.once('dialog', (dialog) => void dialog.accept());
    await page.click('#clear');
    await page.locator('#list .card').first().waitFor({ state: 'detached', timeout: 10_000 });
    assert.equal(inbox.entries.length, 0);
    assert.deepEqual(pageErrors, []);
  });

  it('shows a webhook that arrived while the page was connecting to the event stream', async () => {
    // The stream is held until the webhook has been received: its event went to no one.
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    await page.route('**/api/events', async (route) => {
      await held;
      await route.continue();
    });
    await page.reload();
    await postSigned(inbox, webhook('Sent during the page load', 'Arrived before the stream.'));
    release();
    await page.locator(`#m${inbox.received}`).waitFor({ timeout: 10_000 });
    await page.unroute('**/api/events');
    await page
      .locator('#count', { hasText: /^3 webhook\(s\) received, 1 kept/ })
      .waitFor({ timeout: 10_000 });
  });

  it('shows what arrived while the inbox restarted, without a manual reload', async () => {
    const { port } = inbox;
    await page.locator('#live', { hasText: 'live' }).waitFor({ timeout: 10_000 });
    await inbox.close();
    inbox = await startInbox({ port, secrets: [INBOX_SECRET], dataDir });
    // Received before the page's event stream reconnects (it retries after 1 s).
    await postSigned(inbox, webhook('Sent during the restart', 'Arrived while the page was offline.'));
    await page.locator('#m4').waitFor({ timeout: 10_000 });
    assert.equal(await page.locator('#m3 .subject').textContent(), 'Sent during the page load');
    assert.deepEqual(
      pageErrors.filter((error) => !/ERR_CONNECTION_REFUSED/.test(error)),
      [],
    );
  });
});
