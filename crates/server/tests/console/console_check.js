// The web console driven in headless Chromium (Debian's /usr/bin/chromium)
// by playwright-core, against a real broker, as a person would use it:
// crates/server/tests/console.rs runs it. Every wait is bounded; it exits
// non-zero, with a screenshot of the page, on the first failure.
//
// node console_check.js CONSOLE_URL LOGCTL BROKER SCREENSHOT_DIR
// (the topic `console-orders`, 2 partitions, made beforehand with
// `logctl topics create`).
'use strict';

const { chromium } = require('playwright-core');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const [url, logctlPath, broker, shots] = process.argv.slice(2);
/** Longest any one wait for the page may take, ms. */
const WAIT_MS = 20000;
/** Longest one logctl run may take, ms. */
const LOGCTL_MS = 30000;
/** Longest the whole script may take. */
const SCRIPT_MS = Number(process.env.CARTEIRO_SCRIPT_TIMEOUT_S || 150) * 1000;
const TOPIC = 'console-orders';
const GROUP = 'console-readers';
const MADE = 'console-made';

setTimeout(() => {
  console.error(`console check: over ${SCRIPT_MS} ms, giving up`);
  process.exit(2);
}, SCRIPT_MS).unref();

function step(text) {
  console.log(`-- ${text}`);
}

function logctl(args, input = '') {
  return execFileSync(logctlPath, ['--broker', broker, ...args], {
    input,
    timeout: LOGCTL_MS,
    encoding: 'utf8',
  });
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function main() {
  check(url && logctlPath && broker && shots, 'usage: console_check.js CONSOLE_URL LOGCTL BROKER SCREENSHOT_DIR');
  fs.mkdirSync(shots, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'carteiro-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    timeout: WAIT_MS,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(WAIT_MS);
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // A refused request the page shows as an error (step 8) logs a failed
    // load; anything else at error level is a fault of the page.
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) pageErrors.push(`console: ${m.text()}`);
  });
  const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
  const value = (selector) => page.locator(selector).getAttribute('data-value');

  try {
    step('1. the console lists the topic logctl made');
    await page.goto(url, { timeout: WAIT_MS });
    const row = page.locator(`#topics-table tr[data-topic="${TOPIC}"]`);
    await row.waitFor();
    check((await value(`#topics-table tr[data-topic="${TOPIC}"] [data-field="partitions"]`)) === '2', 'partitions shown');
    check((await value(`#topics-table tr[data-topic="${TOPIC}"] [data-field="records"]`)) === '0', 'no records yet');
    await shot('01-topics');

    step('2. the topic page: two partitions, empty');
    await row.locator('a').click();
    await page.locator(`#view-topic[data-topic="${TOPIC}"]`).waitFor();
    await page.locator('#partitions-table tr[data-partition="1"]').waitFor();

    step('3. logctl produce: the offsets and the produce chart move');
    const lines = ['alice:{"item":"book","qty":1}'];
    for (let i = 1; i < 20; i += 1) lines.push(`user${i}:order ${i}`);
    logctl(
      ['produce', TOPIC, '--partition', '0', '--key-separator', ':', '--header', 'source=console-test'],
      `${lines.join('\n')}\n`,
    );
    await page.waitForFunction(
      () => document.querySelector('#partitions-table tr[data-partition="0"] [data-field="high-watermark"]')?.dataset.value === '20',
      null,
      { timeout: WAIT_MS },
    );
    await page.waitForFunction(
      () => Number(document.getElementById('rate-chart').dataset.producedMax) > 0,
      null,
      { timeout: WAIT_MS },
    );
    const points = await page.locator('#rate-produced').getAttribute('points');
    check(points && points.split(' ').length >= 1, `the produce line has points: ${points}`);
    await shot('02-topic-rates');

    step('4. messages from an offset; one opened: its key, value and header');
    await page.selectOption('#messages-partition', '0');
    await page.selectOption('#messages-start', 'offset');
    await page.fill('#messages-offset', '0');
    await page.fill('#messages-limit', '50');
    await page.click('#messages-load');
    await page.locator('#messages-table tr[data-offset="19"]').waitFor();
    check((await page.locator('#messages-table tbody tr').count()) === 20, 'twenty messages listed');
    await page.click('#messages-table tr[data-offset="0"]');
    await page.locator('#message-detail').waitFor({ state: 'visible' });
    const key = await page.textContent('#message-key');
    check(key === 'alice', `the key reads alice: ${key}`);
    check((await page.getAttribute('#message-value', 'data-encoding')) === 'json', 'the value is shown as JSON');
    const shownValue = JSON.parse(await page.textContent('#message-value'));
    check(shownValue.item === 'book' && shownValue.qty === 1, `the value reads back: ${JSON.stringify(shownValue)}`);
    await page.locator('#message-headers tr[data-header="source"]').waitFor();
    check((await page.textContent('#message-headers tr[data-header="source"]')).includes('console-test'), 'the header');
    await shot('03-message');

    step('5. the latest N, and from a time');
    await page.selectOption('#messages-start', 'latest');
    await page.fill('#messages-limit', '5');
    await page.click('#messages-load');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#messages-table tbody tr')].map((r) => r.dataset.offset).join(',') === '15,16,17,18,19',
      null,
      { timeout: WAIT_MS },
    );
    await page.selectOption('#messages-start', 'time');
    await page.fill('#messages-time', '2001-01-01T00:00:00');
    await page.fill('#messages-limit', '3');
    await page.click('#messages-load');
    await page.waitForFunction(
      () => [...document.querySelectorAll('#messages-table tbody tr')].map((r) => r.dataset.offset).join(',') === '0,1,2',
      null,
      { timeout: WAIT_MS },
    );
    await page.click('#messages-table tr[data-offset="1"]');
    check((await page.textContent('#message-value')) === 'order 1', 'a text value');
    check((await page.getAttribute('#message-value', 'data-encoding')) === 'utf8', 'shown as UTF-8');

    step('6. a group that read 5 of 20 lags by 15');
    logctl(['consume', TOPIC, '-g', GROUP, '--from-beginning', '-n', '5']);
    await page.click('#nav-groups');
    const groupRow = page.locator(`#groups-table tr[data-group="${GROUP}"]`);
    await groupRow.waitFor();
    check((await value(`#groups-table tr[data-group="${GROUP}"] [data-field="lag"]`)) === '15', 'lag 15 in the list');
    await groupRow.locator('a').click();
    await page.locator(`#view-group[data-group="${GROUP}"]`).waitFor();
    await page.waitForFunction(() => document.getElementById('group-lag').dataset.value === '15', null, {
      timeout: WAIT_MS,
    });
    await shot('04-group-lagging');

    step('7. after logctl consume -g, the lag falls to zero');
    logctl(['consume', TOPIC, '-g', GROUP]);
    await page.waitForFunction(() => document.getElementById('group-lag').dataset.value === '0', null, {
      timeout: WAIT_MS,
    });
    const committed = `#group-partitions-table tr[data-topic="${TOPIC}"][data-partition="0"] [data-field="committed"]`;
    check((await value(committed)) === '20', 'committed offset 20');
    await shot('05-group-caught-up');

    step('8. a topic created from the page, after confirming; a bad name refused');
    await page.click('#nav-topics');
    await page.locator('#view-topics').waitFor({ state: 'visible' });
    await page.fill('#create-topic-name', MADE);
    await page.fill('#create-topic-partitions', '3');
    await page.click('#create-topic-submit');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    check((await page.textContent('#confirm-text')).includes(MADE), 'the confirmation names the topic');
    await page.click('#confirm-yes');
    await page.locator(`#topics-table tr[data-topic="${MADE}"]`).waitFor();
    check((await value(`#topics-table tr[data-topic="${MADE}"] [data-field="partitions"]`)) === '3', 'three partitions');
    check(logctl(['topics', 'list']).includes(MADE), 'logctl lists the new topic');
    await shot('06-created');
    await page.fill('#create-topic-name', '../evil');
    await page.click('#create-topic-submit');
    await page.click('#confirm-yes');
    await page.locator('#error').waitFor({ state: 'visible' });
    const refusal = await page.textContent('#error');
    check(refusal.includes('name'), `the refusal names the field: ${refusal}`);
    await shot('07-refused');

    step('9. deleting asks first: cancel keeps it, confirm deletes it');
    await page.locator(`#topics-table tr[data-topic="${MADE}"] a`).click();
    await page.locator(`#view-topic[data-topic="${MADE}"]`).waitFor();
    await page.click('#delete-topic');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-no');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    check(logctl(['topics', 'list']).includes(MADE), 'cancelled: still there');
    await page.click('#delete-topic');
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-yes');
    await page.locator('#view-topics').waitFor({ state: 'visible' });
    await page.locator(`#topics-table tr[data-topic="${MADE}"]`).waitFor({ state: 'detached' });
    await page.locator('#notice').waitFor({ state: 'visible' });
    check(!logctl(['topics', 'list']).includes(MADE), 'deleted: logctl no longer lists it');
    await page.locator(`#topics-table tr[data-topic="${TOPIC}"]`).waitFor();
    await shot('08-deleted');

    check(pageErrors.length === 0, `the page logged errors:\n${pageErrors.join('\n')}`);
    console.log('console check passed');
  } catch (e) {
    await shot('failure').catch(() => {});
    throw e;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`console check failed: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
