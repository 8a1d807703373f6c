// Headless-browser test of the curation pages: upload in the admin UI, watch the job finish,
// find the document, disable a chunk and see it no longer retrieved, delete the document.
//
// Drives Debian's Chromium (/usr/bin/chromium) through playwright-core.
//
// Environment:
//   ENCLAVE_URL       base URL of a running server
//   ENCLAVE_USER, ENCLAVE_PASSWORD   an administrator
//   ENCLAVE_PDF       a PDF to upload
//   ENCLAVE_TEXT      a text file to upload with it
//   ENCLAVE_QUERY     a query the PDF answers
//   SCREENSHOT_DIR    where the screenshots go
//
// Prints one line per step; exits 0 when every check passes, 1 otherwise (with a screenshot
// of the page at the failing step).

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const need = ['ENCLAVE_URL', 'ENCLAVE_USER', 'ENCLAVE_PASSWORD', 'ENCLAVE_PDF', 'ENCLAVE_TEXT',
  'ENCLAVE_QUERY', 'SCREENSHOT_DIR'];
const missing = need.filter((k) => !process.env[k]);
if (missing.length) {
  console.error(`FAIL: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(1);
}
const BASE = process.env.ENCLAVE_URL.replace(/\/+$/, '');
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR);
const COLLECTION = 'handbook';
mkdirSync(SHOTS, { recursive: true });

const t0 = Date.now();
const log = (m) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${m}`);
let current = 'start';
let page;

function check(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
}

async function step(name, fn) {
  current = name;
  log(`STEP ${name}`);
  return fn();
}

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Chunk ids retrieved for the query, per column of the retrieval test page. */
async function retrieved() {
  await page.goto(`${BASE}/admin/retrieval?q=${encodeURIComponent(process.env.ENCLAVE_QUERY)}&collection=${COLLECTION}`);
  const columns = page.locator('section.column');
  check((await columns.count()) === 3, 'three columns: dense, BM25, hybrid');
  const out = [];
  for (let i = 0; i < 3; i += 1) {
    const hits = columns.nth(i).locator('li.hit');
    const ids = [];
    for (let j = 0; j < (await hits.count()); j += 1) {
      ids.push({
        id: await hits.nth(j).getAttribute('data-chunk'),
        document: await hits.nth(j).getAttribute('data-document'),
        page: await hits.nth(j).getAttribute('data-page'),
      });
    }
    out.push(ids);
  }
  return out;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const watchdog = setTimeout(() => { console.error('FAIL: watchdog'); process.exit(1); }, 600_000);
let ok = false;
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));

  await step('sign in', async () => {
    await page.goto(`${BASE}/login?next=/admin/collections`);
    await page.fill('input[name=username]', process.env.ENCLAVE_USER);
    await page.fill('input[name=password]', process.env.ENCLAVE_PASSWORD);
    await Promise.all([page.waitForURL(/\/admin\/collections/), page.click('button[type=submit]')]);
  });

  await step('create a collection and set its passages', async () => {
    await page.fill('#new-name', COLLECTION);
    await Promise.all([page.waitForURL(new RegExp(`/admin/collections/${COLLECTION}`)), page.click('form.create button')]);
    check((await page.locator('.notice').innerText()).includes('created'), 'the created notice');
    await page.fill('#passages', '4');
    await page.selectOption('#reading_order', 'on');
    await Promise.all([page.waitForLoadState('load'), page.click('form.edit button[type=submit]')]);
    check((await page.locator('.notice').innerText()).includes('Saved'), 'the saved notice');
    check((await page.inputValue('#passages')) === '4', 'passages 4 kept');
    check((await page.inputValue('#reading_order')) === 'on', 'reading order on kept');
  });

  await step('upload two files and watch their jobs finish', async () => {
    await page.goto(`${BASE}/admin/upload`);
    await page.selectOption('#collection', COLLECTION);
    await page.fill('#tags', 'manuals');
    await page.setInputFiles('#files', [process.env.ENCLAVE_PDF, process.env.ENCLAVE_TEXT]);
    await page.click('#upload button[type=submit]');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#uploads li')];
      return rows.length === 2 && rows.every((r) => ['ready', 'failed'].includes(r.dataset.state));
    }, null, { timeout: 240_000 });
    const states = await page.locator('#uploads li .state').allInnerTexts();
    log(`      ${states.join(' | ')}`);
    check(states.every((s) => s.startsWith('ready')), `both ready, saw ${states.join(', ')}`);
    await shot('admin-upload');
  });

  let docUrl;
  await step('find the PDF in the documents table', async () => {
    const name = path.basename(process.env.ENCLAVE_PDF).replace(/\.pdf$/, '');
    await page.goto(`${BASE}/admin/documents?collection=${COLLECTION}&tag=manuals`);
    check((await page.locator('table.documents tbody tr').count()) === 2, 'two documents with the tag');
    await page.fill('input[name=q]', name);
    await Promise.all([page.waitForLoadState('load'), page.click('form.filters button[type=submit]')]);
    const rows = page.locator('table.documents tbody tr');
    check((await rows.count()) === 1, 'one row for the search');
    await shot('admin-documents');
    docUrl = await rows.first().locator('td a').first().getAttribute('href');
    await page.goto(`${BASE}${docUrl}`);
    check((await page.locator('h1').innerText()).length > 0, 'the document page');
  });

  await step('disable the top chunk and see it no longer retrieved', async () => {
    const before = await retrieved();
    const top = before[2][0];
    check(top && `/admin/documents/${top.document}` === docUrl, `the PDF first in hybrid results, saw ${JSON.stringify(top)}`);
    await page.goto(`${BASE}${docUrl}?page=${top.page}`);
    const chunk = page.locator(`#chunk-${top.id}`);
    check((await chunk.count()) === 1, 'the chunk on its page');
    await Promise.all([page.waitForLoadState('load'), chunk.locator('button').click()]);
    check((await page.locator(`#chunk-${top.id}`).getAttribute('class')).includes('disabled'), 'the chunk marked disabled');
    check((await page.locator('.notice').first().innerText()).includes('disabled'), 'the disabled notice');
    await shot('admin-document');
    const after = await retrieved();
    for (const column of after) {
      check(!column.some((h) => h.id === top.id), 'the disabled chunk in no column');
    }
    check(after[2].length > 0, 'other passages still retrieved');
    await shot('admin-retrieval');
  });

  await step('the jobs page lists both jobs done', async () => {
    await page.goto(`${BASE}/admin/jobs?status=done`);
    check((await page.locator('tr.job.done').count()) >= 2, 'two done jobs');
    await shot('admin-jobs');
  });

  await step('delete the document, with a confirmation', async () => {
    await page.goto(`${BASE}${docUrl}`);
    await Promise.all([page.waitForLoadState('load'), page.click('button.danger')]);
    check((await page.locator('h1').innerText()).startsWith('Delete'), 'the confirmation page');
    await Promise.all([page.waitForURL(/\/admin\/documents\?/), page.click('button.danger')]);
    check((await page.locator('.notice').innerText()).includes('Deleted'), 'the deleted notice');
    await page.goto(`${BASE}/admin/documents?collection=${COLLECTION}`);
    check((await page.locator('table.documents tbody tr').count()) === 1, 'one document left');
    const after = await retrieved();
    check(after.every((col) => col.every((h) => `/admin/documents/${h.document}` !== docUrl)), 'nothing of the deleted PDF retrieved');
  });
  check(errors.length === 0, `no page errors, saw ${errors.join('; ')}`);
  ok = true;
  log('PASS');
} catch (e) {
  console.error(`FAIL at step "${current}": ${e.message}`);
  if (page) {
    console.error(`page: ${page.url()}`);
    await page.screenshot({ path: path.join(SHOTS, `failure-${current.replace(/\W+/g, '-')}.png`), fullPage: true }).catch(() => {});
    const text = await page.locator('main').innerText().catch(() => '');
    console.error(text.slice(0, 2000));
  }
} finally {
  clearTimeout(watchdog);
  await browser.close();
}
process.exit(ok ? 0 : 1);
