// The dashboard in a real browser (Debian's Chromium driven by playwright-core), against
// a real hub whose address the Rust test `tests/api/browser.rs` passes in SERVERPULSE_URL.
// The test plays the agent itself over the agent API. Every step asserts; the first
// failure ends the run with a message and a screenshot. Screenshots of each main page
// go to SERVERPULSE_ARTEFACTS.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const BASE = process.env.SERVERPULSE_URL;
const ARTEFACTS = process.env.SERVERPULSE_ARTEFACTS;
const CHROMIUM = process.env.SERVERPULSE_CHROMIUM || "/usr/bin/chromium";
assert.ok(BASE && ARTEFACTS, "SERVERPULSE_URL and SERVERPULSE_ARTEFACTS must be set");
mkdirSync(ARTEFACTS, { recursive: true });

const ADMIN = { email: "admin@example.test", password: "correct horse battery" };
const VIEWER = { email: "viewer@example.test", password: "viewer password 1" };
const TIMEOUT = 10_000;

// ---- the agent side, over the agent API ------------------------------------------------
async function agentCall(path, token, body) {
  const response = await fetch(BASE + path, {
    method: "POST",
    headers: Object.assign({ "Content-Type": "application/json" }, token ? { Authorization: "Bearer " + token } : {}),
    body: JSON.stringify(body),
  });
  const json = await response.json();
  assert.equal(response.status, 200, path + " answered " + response.status + ": " + JSON.stringify(json));
  return json;
}
let seq = 0;
function report(agent, cpu, at = Date.now()) {
  seq += 1;
  return agentCall("/api/v1/agents/" + agent.agent_id + "/metrics", agent.auth_token, {
    seq, timestamp: new Date(at).toISOString(),
    metrics: { cpu_usage: cpu, memory_usage: 41.5, disk_usage: 63.2, load_average: 0.42, uptime: 86_400 + seq * 30,
      network_rx: 1_000_000 + seq * 30_000, network_tx: 500_000 + seq * 15_000, disk_io_read: seq * 4096, disk_io_write: seq * 8192,
      detail: { filesystems: [{ mount: "/", device: "/dev/vda1", fstype: "ext4", total: 20e9, used: 12.6e9, available: 7.4e9, percent: 63.2 }],
        interfaces: { eth0: { rx_bytes: 1_000_000, tx_bytes: 500_000, rx_packets: 10, tx_packets: 5, rx_rate: 1000, tx_rate: 500 } },
        processes: { total: 120, running: 2, top_cpu: [{ pid: 4242, name: "postgres", cpu: 12.5, memory: 512e6 }], top_memory: [] } } },
    services: [{ name: "nginx", status: "active" }, { name: "backup", status: "failed" }],
  });
}

// ---- the browser ---------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 900 }, acceptDownloads: true });
const page = await context.newPage();
page.setDefaultTimeout(TIMEOUT);
const problems = [];
page.on("pageerror", (e) => problems.push("page error: " + e.message));
page.on("console", (m) => { if (m.type() === "error") problems.push("console error: " + m.text()); });

const shot = (name) => page.screenshot({ path: join(ARTEFACTS, name + ".png"), fullPage: true });
let step = "start";
async function run(name, body) {
  step = name;
  await body();
  // Refused forms (400, 401, 403) are answers the steps expect; anything else is a fault.
  const expected = /status of (400|401|403)/;
  assert.deepEqual(problems.filter((p) => !expected.test(p)), [], "browser errors during: " + name);
  problems.length = 0;
  console.log("ok - " + name);
}
async function signIn(user) {
  await page.goto(BASE + "/login");
  await page.fill('input[name="email"]', user.email);
  await page.fill('input[name="password"]', user.password);
  await Promise.all([page.waitForURL(/\/fleet$/), page.click('main button[type="submit"]')]);
}
async function signOut() {
  await page.click(".user-menu summary");
  await Promise.all([page.waitForURL(/\/login/), page.click('.user-menu button:has-text("Sign out")')]);
}

try {
  let agent, serverId;

  await run("first run asks for the administrator and signs them in", async () => {
    await page.goto(BASE + "/");
    assert.match(page.url(), /\/setup$/);
    await shot("01-setup");
    await page.fill('input[name="email"]', ADMIN.email);
    await page.fill('input[name="password"]', "short");
    await page.fill('input[name="confirm"]', "short");
    await page.click('main button[type="submit"]');
    await page.waitForSelector('.field-error[data-field="password"]');
    await page.fill('input[name="password"]', ADMIN.password);
    await page.fill('input[name="confirm"]', ADMIN.password);
    await Promise.all([page.waitForURL(/\/fleet$/), page.click('main button[type="submit"]')]);
    await page.waitForSelector("text=No servers yet");
    await shot("02-fleet-empty");
  });

  await run("sign out, a wrong password is refused, the right one signs in", async () => {
    await signOut();
    await page.fill('input[name="email"]', ADMIN.email);
    await page.fill('input[name="password"]', "not the password");
    await page.click('main button[type="submit"]');
    await page.waitForSelector("text=Wrong e-mail address or password");
    await signIn(ADMIN);
  });

  await run("add a server: the install command appears, then the agent registers and the page turns online", async () => {
    await page.click('nav a:has-text("Add server")');
    await page.fill('input[name="name"]', "");
    await page.fill('input[name="ip"]', "not-an-ip");
    await page.click('main button[type="submit"]');
    await page.waitForSelector('.field-error[data-field="ip"]:not([hidden])');
    await page.fill('input[name="name"]', "web-1");
    await page.fill('input[name="ip"]', "127.0.0.2");
    await page.click('main button[type="submit"]');
    await page.waitForSelector("#install-step:not([hidden])");
    const command = await page.textContent("#install-command");
    const token = new URL(command.match(/'([^']+)'/)[1]).searchParams.get("token");
    assert.ok(token && token.length >= 32, "install command carries the enrollment token: " + command);
    assert.ok(await page.isVisible("#waiting"));
    await shot("03-add-server-waiting");
    agent = await agentCall("/api/v1/agents/register", null, {
      hostname: "web-1.example.test", enrollment_token: token, agent_version: "1.4.2",
      system_info: { os: "Debian GNU/Linux 12", kernel: "6.1.0-28-amd64", arch: "x86_64" },
    });
    serverId = agent.server_id;
    await page.waitForSelector("#connected:not([hidden])");
    assert.equal(await page.getAttribute("#server-link", "href"), "/servers/" + serverId);
    await shot("04-add-server-connected");
  });

  await run("the fleet overview shows the server and updates its figures live", async () => {
    await report(agent, 10.0);
    await page.goto(BASE + "/fleet");
    const row = 'tr[data-server-id="' + serverId + '"]';
    await page.waitForSelector(row + ' .badge:has-text("online")');
    await report(agent, 42.5);
    await page.waitForSelector(row + ' .gauge[data-field="cpu"] .value:has-text("42.5 %")');
    assert.match(await page.textContent(row), /1 failed/);
    await shot("05-fleet");
    await agentCall("/api/v1/agents/" + agent.agent_id + "/alerts", agent.auth_token, {
      alerts: [{ type: "disk_smart", severity: "warning", message: "SMART: reallocated sectors on sda", timestamp: new Date().toISOString() }],
    });
    await page.waitForSelector(row + ' [data-count="open"]:has-text("2 open")');
    // A server that is not on this page reports: the page says so instead of jumping.
    const other = await page.evaluate(async () => (await fetch("/api/v1/servers", { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.csrf },
      body: JSON.stringify({ name: "db-1", ip: "127.0.0.3" }) })).json());
    await agentCall("/api/v1/agents/register", null, { hostname: "db-1", enrollment_token: other.enrollment_token });
    await page.waitForSelector('#fleet-news:not([hidden]):has-text("1 server not shown here has reported")');
  });

  await run("the server page draws its charts and a new point arrives over SSE", async () => {
    await page.goto(BASE + "/servers/" + serverId);
    await page.waitForFunction(() => document.querySelectorAll("#charts .uplot").length === 6);
    const at = Date.now() + 1000;
    await report(agent, 77.7, at);
    await page.waitForFunction((t) => document.getElementById("charts").dataset.lastPoint === String(t), at);
    await page.waitForSelector('.tile .gauge[data-field="cpu"] .value:has-text("77.7 %")');
    assert.match(await page.textContent("body"), /postgres/);
    assert.match(await page.textContent("#services"), /backup/);
    await page.click('.ranges .range[data-range="24h"]');
    await page.waitForFunction(() => document.querySelector(".ranges .range.current").dataset.range === "24h");
    await page.waitForFunction(() => document.querySelectorAll("#charts .uplot").length === 6);
    await shot("06-server");
  });

  await run("an alert appears live, rings the bell, and is acknowledged with a comment", async () => {
    await page.goto(BASE + "/alerts");
    await page.waitForSelector("#alerts-results");
    const before = Number(await page.textContent("#bell-count"));
    await agentCall("/api/v1/agents/" + agent.agent_id + "/alerts", agent.auth_token, {
      alerts: [{ type: "oom_kill", severity: "critical", message: "postgres was killed by the OOM killer", timestamp: new Date().toISOString() }],
    });
    await page.waitForSelector("text=postgres was killed by the OOM killer");
    await page.waitForFunction((n) => document.getElementById("bell-count").textContent === String(n), before + 1);
    const item = '.alert-item:has-text("postgres was killed by the OOM killer")';
    await page.fill(item + ' input[name="comment"]', "looking into it");
    await page.click(item + ' button:has-text("Acknowledge")');
    await page.waitForSelector(item + ' .badge:has-text("acknowledged")');
    assert.match(await page.textContent(item), /looking into it/);
    await page.click("#bell");
    await page.waitForSelector('#bell-list li:has-text("postgres was killed")');
    await shot("07-alerts");
  });

  await run("the log lists what happened and exports it as CSV", async () => {
    await page.goto(BASE + "/logs");
    await page.waitForSelector("text=admin@example.test signed in");
    await shot("08-logs");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click("#export-csv")]);
    const file = join(ARTEFACTS, "events.csv");
    await download.saveAs(file);
    const csv = readFileSync(file, "utf8");
    assert.ok(csv.startsWith("id,at,server_id,kind,severity,message\r\n"), csv.slice(0, 80));
    assert.match(csv, /agent_registered/);
    assert.match(csv, /alert_acknowledged|agent_alert/);
  });

  await run("settings: a rule is checked field by field, then added", async () => {
    await page.click('nav a:has-text("Settings")');
    await page.waitForURL(/\/settings\/rules$/);
    const form = "#new-rule";
    await page.fill(form + ' input[name="name"]', "Swap pressure");
    await page.fill(form + ' input[name="metric"]', "swapiness");
    await page.fill(form + ' input[name="warning"]', "50");
    await page.click(form + ' button[type="submit"]');
    await page.waitForSelector(form + ' .field-error[data-field="metric"]:not([hidden])');
    await page.fill(form + ' input[name="metric"]', "swap");
    await page.click(form + ' button[type="submit"]');
    await page.waitForSelector('table.rules td:has-text("Swap pressure")');
    await shot("11-settings-rules");
  });

  await run("settings: a channel is added and sends a test; a silence is set", async () => {
    await page.click('.tabs a:has-text("Channels")');
    await page.fill('#new-channel input[name="name"]', "ops hook");
    await page.selectOption('#new-channel select[name="kind"]', "webhook");
    await page.fill('#new-channel textarea[name="settings"]', '{"url": "http://127.0.0.1:9/hook", "secret": "s3cret"}');
    await page.click('#new-channel button[type="submit"]');
    const item = 'article.item:has-text("ops hook")';
    await page.waitForSelector(item);
    assert.ok(!(await page.textContent("main")).includes("s3cret"), "channel secrets are never shown");
    await page.click(item + ' button:has-text("Send test")');
    await page.waitForSelector(item + ' .notice.ok:not([hidden])');
    await shot("12-settings-channels");
    await page.click('.tabs a:has-text("Silences")');
    await page.fill('#new-silence input[name="comment"]', "kernel upgrade");
    await page.click('#new-silence button[type="submit"]');
    await page.waitForSelector('li:has-text("kernel upgrade") .badge:has-text("active")');
  });

  await run("server settings: tags and agent thresholds are saved, a fresh install command is shown", async () => {
    await page.goto(BASE + "/servers/" + serverId);
    await page.click('a:has-text("Server settings")');
    await page.fill('#server-form input[name="tags"]', "prod, web");
    await page.click('#server-form button[type="submit"]');
    await page.waitForFunction(() => document.querySelector('#server-form input[name="tags"]').value === "prod, web");
    await page.fill('#agent-settings input[name="thresholds.cpu"]', "150");
    await page.click('#agent-settings button[type="submit"]');
    await page.waitForSelector('#agent-settings .field-error[data-field="thresholds.cpu"]:not([hidden])');
    await page.fill('#agent-settings input[name="thresholds.cpu"]', "85");
    await page.fill('#agent-settings input[name="services"]', "nginx, postgresql");
    await page.click('#agent-settings button[type="submit"]');
    await page.waitForSelector("text=Revision 1.");
    assert.equal(await page.inputValue('#agent-settings input[name="thresholds.cpu"]'), "85");
    await page.click('#new-enrollment button');
    await page.waitForSelector('#fresh-command:has-text("install.sh?token=")');
    await shot("13-server-settings");
  });

  await run("users and tokens: a viewer is added, a token is shown once", async () => {
    await page.goto(BASE + "/settings/users");
    await page.fill('#new-user input[name="email"]', VIEWER.email);
    await page.selectOption('#new-user select[name="role"]', "viewer");
    await page.fill('#new-user input[name="password"]', VIEWER.password);
    await page.click('#new-user button[type="submit"]');
    await page.waitForSelector("#new-user + .notice.ok:not([hidden])");
    await page.fill('#new-token input[name="name"]', "grafana");
    await page.click('#new-token button[type="submit"]');
    await page.waitForSelector('#new-token-secret:has-text("sp_")');
    await page.goto(BASE + "/settings/users");
    await page.waitForSelector('td:has-text("' + VIEWER.email + '")');
    await page.waitForSelector('li:has-text("grafana")');
    assert.equal(await page.locator("#new-token-secret").textContent(), "", "the secret is not shown again");
    await shot("14-settings-users");
  });

  await run("a viewer sees no admin or operator actions", async () => {
    const forged = await page.evaluate(async () => (await fetch("/api/v1/servers", { method: "POST",
      credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: "{}" })).status);
    assert.equal(forged, 403, "a session request without the CSRF token is refused");
    await signOut();
    await signIn(VIEWER);
    assert.equal(await page.locator('nav a:has-text("Add server")').count(), 0);
    await shot("09-viewer-fleet");
    await page.goto(BASE + "/alerts?state=all");
    await page.waitForSelector("text=postgres was killed by the OOM killer");
    assert.equal(await page.locator('.alert-item button').count(), 0, "no acknowledge/resolve/silence for a viewer");
    const response = await page.goto(BASE + "/servers/new");
    assert.equal(response.status(), 403);
    await page.waitForSelector("text=needs the admin role");
    await page.goto(BASE + "/settings/rules");
    await page.waitForSelector('td:has-text("Swap pressure")');
    assert.equal(await page.locator("#new-rule").count(), 0, "viewers read rules, never change them");
    assert.equal(await page.locator('.tabs a:has-text("Users")').count(), 0);
    assert.equal((await page.goto(BASE + "/settings/users")).status(), 403);
  });

  await run("the dark theme follows the system setting", async () => {
    await page.emulateMedia({ colorScheme: "dark" });
    await page.goto(BASE + "/servers/" + serverId);
    await page.waitForFunction(() => document.querySelectorAll("#charts .uplot").length === 6);
    const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(background, "rgb(15, 19, 26)", "dark background");
    await shot("15-server-dark");
    await page.emulateMedia({ colorScheme: "light" });
  });

  await run("the phone layout keeps the fleet readable", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(BASE + "/fleet");
    await page.waitForSelector('tr[data-server-id] .badge:has-text("online")');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, "the page does not scroll sideways on a phone (" + overflow + " px)");
    await shot("10-fleet-phone");
  });
} catch (error) {
  await shot("failure").catch(() => {});
  console.error("FAILED at step: " + step);
  console.error(error && error.stack ? error.stack : error);
  if (problems.length) console.error(problems.join("\n"));
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log("all steps passed");
