// Real VS Code (code-server 4.100.3 = VS Code 1.100.3) in headless Debian Chromium, with the
// Migration LSP extension installed from its .vsix the way a user installs it, and a test-only
// probe extension (probe/) that drives the VS Code API and writes JSON.
//
// usage: node tests/vscode/e2e.js --workspace DIR --file HEAD.py --out RESULT.json
//          [--vsix editors/vscode/migration-lsp.vsix] [--server bundled|environment|setting|path|none]
//          [--screenshot hover.png] [--graph-screenshot graph.png] [--untrusted 1] [--keep 1] [--trace 1]
//          [--path-prepend DIR] [--user-settings JSON] [--python-ext PYTHON|JSON] [--restart-command JSON]
//          [--expect no-server|multi-root] [--switch-python PYTHON]
// --workspace is a folder, or a .code-workspace file (a multi-root workspace).
// code-server's PATH never has this repository's .venv/bin, except in `path` mode.
// --server bundled: no setting: the extension runs the server it bundles (the default);
// --server environment: importStrategy fromEnvironment: the Python extension's interpreter (see --python-ext) runs it;
// --server setting: migrationLsp.server.command points at .venv/bin/migration-lsp (machine settings);
// --server path:    no setting, .venv/bin is on code-server's PATH (importStrategy fromEnvironment finds it);
// --server none:    importStrategy fromEnvironment and nothing installed: the extension must show its error.
// --server nopython: the bundled server, and no Python at all on code-server's PATH (an empty folder).
// --untrusted 1:    workspace trust on and the folder not trusted (restricted mode).
// --path-prepend:   a directory put first on code-server's PATH (e.g. a workspace's .venv/bin).
// --user-settings:  more user settings, as JSON.
// --python-ext:     install a stand-in for the Python extension (fake-python/) whose selected interpreter is PYTHON
//                   (or, as JSON {"<folder>": "<interpreter>"}, each folder's own).
// --expect no-server: the probe only waits for activation and opens --file (what --server none|nopython do);
// --expect multi-root: the probe checks each folder's model findings instead of the single-folder steps,
//                   then selects --switch-python for the second folder (in the stand-in).
// --restart-command: the probe restarts the server by setting migrationLsp.server.command to this (JSON list).
// The extension's output (a LogOutputChannel, written to code-server's logs) is returned as `outputLog`.
// Prints the probe's JSON plus status-bar texts; exit 0 when the probe wrote a result (assertions are
// the caller's), 2 when the session itself failed (code-server log on stderr).
const { spawn, execFileSync } = require("child_process");
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const ROOT = path.resolve(__dirname, "../..");
const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
const abs = (p) => p && path.resolve(p);
const folder = abs(args.workspace);
const file = abs(args.file);
const out = abs(args.out);
const vsix = abs(args.vsix || path.join(ROOT, "editors/vscode/migration-lsp.vsix"));
const serverMode = args.server || "setting";
const shots = { hover: abs(args.screenshot), graph: abs(args["graph-screenshot"]) };
const CODE_SERVER = process.env.CODE_SERVER || path.join(ROOT, ".cache/code-server/node_modules/.bin/code-server");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const VSCE = path.join(ROOT, "editors/vscode/node_modules/.bin/vsce");
const VENV_BIN = path.join(ROOT, ".venv/bin");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The extension's LogOutputChannel, as code-server wrote it into its logs folder. */
function outputLog(userData) {
  const found = [];
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (/Migration LSP\.log$/.test(e.name)) found.push(fs.readFileSync(p, "utf8"));
    }
  };
  if (fs.existsSync(path.join(userData, "logs"))) walk(path.join(userData, "logs"));
  return found.join("\n");
}

function log(msg) {
  process.stderr.write(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);
}

const t0 = Date.now();

(async () => {
  for (const [what, p] of [["workspace", folder], ["file", file], ["vsix", vsix], ["code-server", CODE_SERVER], ["chromium", CHROMIUM]]) {
    if (!p || !fs.existsSync(p)) {
      console.error(`e2e: ${what} not found: ${p} (run \`make vscode-deps\`)`);
      process.exit(2);
    }
  }
  fs.rmSync(out, { force: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "migration-lsp-cs-"));
  const userData = path.join(tmp, "user-data");
  const extensions = path.join(tmp, "extensions");
  const sync = path.join(tmp, "sync");
  const xdg = path.join(tmp, "xdg");
  for (const d of [path.join(userData, "User"), extensions, sync, xdg]) fs.mkdirSync(d, { recursive: true });

  // the probe is packaged like any extension; both are installed with --install-extension
  const probeVsix = path.join(tmp, "probe.vsix");
  execFileSync(VSCE, ["package", "--no-dependencies", "--allow-missing-repository", "--skip-license", "--out", probeVsix],
    { cwd: path.join(__dirname, "probe"), stdio: ["ignore", "ignore", "inherit"] });
  const env = { ...process.env, XDG_CONFIG_HOME: xdg, XDG_DATA_HOME: path.join(xdg, "data"), XDG_CACHE_HOME: path.join(xdg, "cache") };
  // a PATH without the venv: in "path" mode only the venv's bin dir is added, so the fallback is what finds it
  const basePath = (process.env.PATH || "").split(path.delimiter).filter((p) => path.resolve(p) !== VENV_BIN).join(path.delimiter);
  env.PATH = serverMode === "path" ? `${VENV_BIN}${path.delimiter}${basePath}` : basePath;
  if (args["path-prepend"]) env.PATH = `${abs(args["path-prepend"])}${path.delimiter}${env.PATH}`;
  if (serverMode === "nopython") {
    env.PATH = path.join(tmp, "empty-bin"); // code-server itself is started by this node, by path
    fs.mkdirSync(env.PATH);
  }
  // like `code .` from a terminal with the venv activated: VS Code then keeps this environment
  // instead of resolving the login shell's (which would drop the venv from PATH)
  env.VSCODE_CLI = "1";
  delete env.VIRTUAL_ENV;
  const install = ["--install-extension", vsix, "--install-extension", probeVsix];
  if (args["python-ext"]) {
    const fakeVsix = path.join(tmp, "fake-python.vsix");
    execFileSync(VSCE, ["package", "--no-dependencies", "--allow-missing-repository", "--skip-license", "--out", fakeVsix],
      { cwd: path.join(__dirname, "fake-python"), stdio: ["ignore", "ignore", "inherit"] });
    install.push("--install-extension", fakeVsix);
  }
  execFileSync(process.execPath, [CODE_SERVER, "--user-data-dir", userData, "--extensions-dir", extensions, ...install],
    { env, stdio: ["ignore", "ignore", "inherit"] });
  log("extensions installed");

  const untrusted = !!args.untrusted;
  // one interpreter, or {"<folder>": "<interpreter>"} for a multi-root workspace
  const pythonExt = (args["python-ext"] || "").startsWith("{") ? args["python-ext"] : abs(args["python-ext"]) || "";
  const settings = {
    "workbench.startupEditor": "none", "security.workspace.trust.enabled": untrusted,
    "security.workspace.trust.startupPrompt": "never", "security.workspace.trust.banner": "never",
    "telemetry.telemetryLevel": "off", "extensions.autoUpdate": false, "extensions.autoCheckUpdates": false,
    "files.hotExit": "off", "files.autoSave": "off", "workbench.tips.enabled": false,
    "editor.hover.delay": 100, "window.commandCenter": false, "chat.commandCenter.enabled": false,
    "workbench.colorTheme": "Default Light Modern",
  };
  if (args.trace) settings["migrationLsp.trace.server"] = "verbose";
  if (["none", "path", "environment"].includes(serverMode)) settings["migrationLsp.importStrategy"] = "fromEnvironment";
  Object.assign(settings, JSON.parse(args["user-settings"] || "{}"));
  fs.writeFileSync(path.join(userData, "User/settings.json"), JSON.stringify(settings, null, 2));
  if (serverMode === "setting") {
    // a path on the machine that runs the server: machine-scoped, so in code-server (a remote window
    // for VS Code) it belongs in the remote machine's settings, where a user of code-server puts it
    fs.mkdirSync(path.join(userData, "Machine"), { recursive: true });
    fs.writeFileSync(path.join(userData, "Machine/settings.json"), JSON.stringify({
      "migrationLsp.server.command": [path.join(VENV_BIN, "migration-lsp"), "serve"],
    }, null, 2));
  }

  const port = 18000 + Math.floor(Math.random() * 1000);
  const cs = spawn(process.execPath, [CODE_SERVER,
    "--bind-addr", `127.0.0.1:${port}`, "--auth", "none",
    "--user-data-dir", userData, "--extensions-dir", extensions,
    "--disable-telemetry", "--disable-update-check", "--disable-getting-started-override",
    ...(untrusted ? [] : ["--disable-workspace-trust"]),
  ], {
    env: { ...env, MIGRATION_LSP_E2E_OUT: out, MIGRATION_LSP_E2E_FILE: file, MIGRATION_LSP_E2E_SYNC: sync,
      MIGRATION_LSP_E2E_EXPECT: ["none", "nopython"].includes(serverMode) ? "no-server" : args.expect || "", MIGRATION_LSP_E2E_PYTHON: pythonExt,
      MIGRATION_LSP_E2E_SWITCH: abs(args["switch-python"]) || "",
      MIGRATION_LSP_E2E_RESTART_COMMAND: args["restart-command"] || "" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let csLog = "";
  cs.stdout.on("data", (d) => (csLog += d));
  cs.stderr.on("data", (d) => (csLog += d));
  let browser;
  let code = 2;
  const status = {};
  try {
    for (let i = 0; i < 200 && !csLog.includes("HTTP server listening"); i++) await sleep(100);
    if (!csLog.includes("HTTP server listening")) throw new Error("code-server did not start");
    log("code-server up");
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage({ viewport: { width: 1100, height: 640 } });
    // a .code-workspace file opens a multi-root workspace
    const kind = folder.endsWith(".code-workspace") ? "workspace" : "folder";
    await page.goto(`http://127.0.0.1:${port}/?${kind}=${encodeURIComponent(folder)}`);
    const notifications = [];
    const notificationTexts = async () =>
      (await page.locator(".notification-list-item-message").allInnerTexts()).map((s) => s.trim());
    const statusTexts = async () => (await page.locator(".statusbar-item").allInnerTexts()).map((s) => s.trim()).filter(Boolean);
    const deadline = Date.now() + 180000; // generous: a loaded machine is slow, and the probe bounds every wait itself
    while (!fs.existsSync(out) && Date.now() < deadline) {
      for (const name of ["notifications", "hover", "graph"]) {
        if (fs.existsSync(path.join(sync, `${name}.ready`)) && !fs.existsSync(path.join(sync, `${name}.done`))) {
          log(`probe at ${name}`);
          if (shots[name]) await sleep(name === "graph" ? 2500 : 1200); // hover fade-in / mermaid rendering
          status[name] = await statusTexts();
          // the status bar item follows the server asynchronously: give it time to catch up
          for (let i = 0; i < 100 && name === "hover" && !status[name].some((s) => s.includes("head")); i++) {
            await sleep(100);
            status[name] = await statusTexts();
          }
          for (const n of await notificationTexts()) if (!notifications.includes(n)) notifications.push(n);
          if (shots[name]) {
            fs.mkdirSync(path.dirname(shots[name]), { recursive: true });
            await page.screenshot({ path: shots[name] });
          }
          fs.writeFileSync(path.join(sync, `${name}.done`), "");
        }
      }
      await sleep(100);
    }
    if (!fs.existsSync(out)) throw new Error("the probe extension wrote no result");
    status.end = await statusTexts();
    // with no server the error item appears once discovery has finished (slow on a loaded machine)
    const probed = JSON.parse(fs.readFileSync(out, "utf8"));
    for (let i = 0; i < 300 && probed.extensionActive && ["none", "nopython"].includes(serverMode) && !status.end.some((s) => s.includes("Alembic:")); i++) {
      await sleep(100);
      status.end = await statusTexts();
    }
    // the status item's tooltip (it names the server and its version)
    try {
      const item = page.locator('[id="migration-lsp.migration-lsp.migrationLsp.heads"]');
      await item.hover({ timeout: 5000 });
      const hover = page.locator(".workbench-hover, .monaco-hover").filter({ hasText: "Server" }).first();
      await hover.waitFor({ state: "visible", timeout: 5000 });
      status.tooltip = (await hover.innerText()).trim();
    } catch (e) {
      status.tooltip = `(no tooltip: ${e && e.message})`;
    }
    for (const n of await notificationTexts()) if (!notifications.includes(n)) notifications.push(n);
    const res = JSON.parse(fs.readFileSync(out, "utf8"));
    res.statusBar = status;
    res.outputLog = outputLog(userData);
    res.notifications = notifications;
    res.serverMode = serverMode;
    res.elapsedMs = Date.now() - t0;
    fs.writeFileSync(out, JSON.stringify(res, null, 2));
    console.log(JSON.stringify(res));
    code = 0;
  } catch (e) {
    console.error(`e2e FAILED: ${e && e.message}\n--- code-server log ---\n${csLog}`);
    code = 2;
  } finally {
    if (browser) await browser.close().catch(() => undefined);
    cs.kill("SIGTERM");
    await new Promise((r) => { cs.once("exit", r); setTimeout(r, 3000); });
    if (args.keep) log(`kept ${tmp}`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  }
  process.exit(code);
})();
