import * as vscode from "vscode";
import * as os from "os";
import {
  ClientCapabilities,
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  FeatureState,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
  StaticFeature,
} from "vscode-languageclient/node";
import { Discovery, discoverServer, pythonExtensionApi, selectedInterpreter, ServerCommand } from "./discovery";
import { BaseStatus, Environment, environmentsOf, GraphPanel, revisionOf } from "./graph";

const SHOW_GRAPH = "migrationLsp.showGraph"; // implemented by the server: mermaid text
const GRAPH = "migration-lsp/graph"; // request: the revision graph as JSON, with each base branch
const GRAPH_CHANGED = "migration-lsp/graphChanged"; // notification: heads, revisions or a base changed

/** Tells the server this client wants GRAPH_CHANGED (it sends it to no one else). */
class GraphChangedFeature implements StaticFeature {
  fillClientCapabilities(capabilities: ClientCapabilities): void {
    const experimental = (capabilities.experimental ?? {}) as Record<string, unknown>;
    capabilities.experimental = { ...experimental, migrationLsp: { graphChanged: true } };
  }
  initialize(): void {}
  getState(): FeatureState {
    return { kind: "static" };
  }
  clear(): void {}
}
const CREATE_NEXT_KIND = "source.migrationLsp.createNextRevision";
/** Settings that choose what runs the server: a change restarts it. */
const RESTART_SETTINGS = ["server", "importStrategy"];
/** Settings the server reads: a change is sent with workspace/didChangeConfiguration. */
const SERVER_SETTINGS = ["select", "ignore", "models", "python", "dialect", "excludeTables", "baseBranch", "lockHints",
  "postgresVersion", "verify", "databaseUrl", "initialMetadata"];

let extensionUri: vscode.Uri;
let extensionPath: string;
let output: vscode.LogOutputChannel;
let client: LanguageClient | undefined;
let current: ServerCommand | undefined;
let discovery: Discovery | undefined;
let status: vscode.StatusBarItem;
let environments: Environment[] = [];
let starting: Promise<void> = Promise.resolve();
let statusTimer: NodeJS.Timeout | undefined;
/** The interpreter the Python extension selected for each workspace folder (by folder URI;
 * trusted workspaces only): it imports that folder's models. */
let interpreters = new Map<string, string>();

/** The settings the server reads, for one workspace folder (its folder-level settings and its
 * interpreter) or, without one, for the workspace (the first folder's interpreter). */
function serverSettings(folder?: vscode.WorkspaceFolder): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration("migrationLsp", folder);
  const out: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = config.get(key);
    // only what someone set: a default (lockHints: true) must not override pyproject.toml's setting
    const info = config.inspect(key);
    const set = [info?.globalValue, info?.workspaceValue, info?.workspaceFolderValue].some((v) => v !== undefined);
    if (set && value !== undefined && value !== null && value !== "" && !(Array.isArray(value) && value.length === 0)) {
      out[key] = value;
    }
  }
  const python = interpreters.get((folder ?? vscode.workspace.workspaceFolders?.[0])?.uri.toString() ?? "");
  if (out.python === undefined && python && vscode.workspace.isTrusted) {
    out.python = python; // the models are imported with the project's interpreter
  }
  return out;
}

/** The interpreter the Python extension selected for each folder, when the workspace is trusted
 * (in an untrusted one nothing of the project is imported, and nothing inside it is run). */
async function refreshInterpreters(): Promise<void> {
  const found = new Map<string, string>();
  const api = vscode.workspace.isTrusted ? await pythonExtensionApi() : undefined;
  for (const folder of api ? vscode.workspace.workspaceFolders ?? [] : []) {
    const python = await selectedInterpreter(folder.uri, api);
    if (python) {
      found.set(folder.uri.toString(), python);
    }
  }
  interpreters = found;
}

/** Changed settings reach the running server without a restart: the server takes them as its
 * whole configuration (a setting removed is gone), then asks each folder's own
 * (workspace/configuration with a scopeUri, answered by the middleware below). */
function pushSettings(): void {
  const settings = serverSettings();
  if (client && client.state === State.Running) {
    output.info(`settings changed: ${JSON.stringify(settings)}`);
    void client.sendNotification(DidChangeConfigurationNotification.type, { settings: { migrationLsp: settings } })
      .catch((err) => output.warn(`settings not sent: ${err}`));
  }
}

const EXCLUDE = "**/{node_modules,.venv,venv,.tox,.nox,.git,site-packages}/**";

/** Whether the workspace has an Alembic project of its own: the activation events also match
 * Alembic's templates inside a virtualenv (site-packages/alembic/templates/…/script.py.mako). */
async function looksLikeAlembicWorkspace(): Promise<boolean> {
  for (const glob of ["**/alembic.ini", "**/script.py.mako"]) {
    if ((await vscode.workspace.findFiles(glob, EXCLUDE, 1)).length) {
      return true;
    }
  }
  for (const uri of await vscode.workspace.findFiles("**/pyproject.toml", EXCLUDE, 50)) {
    try {
      const text = Buffer.from(await vscode.workspace.fs.readFile(uri)).toString("utf8");
      if (/^\[tool\.(alembic|migration-lsp)\b/m.test(text)) {
        return true;
      }
    } catch {
      // unreadable: not ours
    }
  }
  return false;
}

/** An error with the way out; not awaited, so a notification nobody dismisses blocks nothing. */
function notifyError(message: string): void {
  void vscode.window.showErrorMessage(message, "Open Settings", "Show Output").then((choice) => {
    if (choice === "Open Settings") {
      void vscode.commands.executeCommand("workbench.action.openSettings", "migrationLsp.server.command");
    } else if (choice === "Show Output") {
      output.show(true);
    }
  });
}

let alembicWatcher: vscode.FileSystemWatcher | undefined;

/** No Alembic project yet: start the server when an alembic.ini, a script.py.mako or a
 * `[tool.alembic]` appears (`alembic init`), not before. */
function startWhenAlembicAppears(): void {
  if (alembicWatcher) {
    return;
  }
  const watcher = vscode.workspace.createFileSystemWatcher("**/{alembic.ini,script.py.mako,pyproject.toml}", false, false, true);
  const check = () => void looksLikeAlembicWorkspace().then((found) => {
    if (found && alembicWatcher === watcher) {
      stopWatchingForAlembic();
      output.info("an Alembic project appeared: starting the server");
      void restart();
    }
  });
  watcher.onDidCreate(check);
  watcher.onDidChange(check);
  alembicWatcher = watcher;
}

function stopWatchingForAlembic(): void {
  alembicWatcher?.dispose();
  alembicWatcher = undefined;
}

async function startClient(): Promise<void> {
  if (!(await looksLikeAlembicWorkspace())) {
    current = undefined;
    output.info("no alembic.ini, script.py.mako or [tool.alembic] in this workspace (virtualenvs and node_modules " +
      "left out): the server starts when one appears");
    startWhenAlembicAppears();
    return;
  }
  stopWatchingForAlembic();
  await refreshInterpreters();
  discovery = await discoverServer(extensionPath);
  const server = discovery.server;
  if (!server) {
    current = undefined;
    const why = discovery.notes.join(" ");
    output.error(`no language server found. ${why}`);
    if (discovery.noPython) {
      setStatusError("Python 3.10+ not found");
      notifyError(`Migration LSP: no Python 3.10 or newer found to run the language server. ${why} ` +
        "Install Python 3.10+ (python3 on PATH) or select one in the Python extension; then run “Migration LSP: Restart server”.");
      return;
    }
    setStatusError("server not found");
    notifyError(
      `Migration LSP: the language server was not found. ${why} Set migrationLsp.importStrategy to useBundled, ` +
        "or install it into the project's environment (pip install migration-lsp) and select that interpreter " +
        "in the Python extension, or set migrationLsp.server.command to the server's path; " +
        "then run “Migration LSP: Restart server”.",
    );
    return;
  }
  current = server;
  const initSettings = serverSettings();
  output.info(`starting ${[server.command, ...server.args].join(" ")} (${server.source}); ` +
    `trusted workspace: ${vscode.workspace.isTrusted}`);
  if (server.version) {
    output.info(`server: ${server.version}`);
  }
  for (const folder of vscode.workspace.workspaceFolders ?? []) {
    const python = serverSettings(folder).python;
    if (python) {
      output.info(`models of ${folder.name} are imported with ${python}`);
    }
  }
  const serverOptions: ServerOptions = {
    command: server.command,
    args: server.args,
    // no `transport`: with TransportKind.stdio the client would append `--stdio` to the arguments.
    // Never the workspace as working directory (`python -m` would import its modules); not the
    // shared temp folder either (anyone can put an `argparse.py` there): the extension's own folder.
    options: { cwd: extensionPath || os.homedir() },
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: "file", language: "python" }],
    outputChannel: output,
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    initializationOptions: { trusted: vscode.workspace.isTrusted, settings: initSettings },
    middleware: {
      workspace: {
        // the server asks for its section, once per workspace folder too (scopeUri): the settings
        // as pushed, with that folder's own settings and models interpreter
        configuration: async (params, token, next) => {
          const answer = await next(params, token);
          if (!Array.isArray(answer)) {
            return answer;
          }
          return params.items.map((item, i) => {
            if (item.section !== "migrationLsp") {
              return answer[i];
            }
            const folder = item.scopeUri ? vscode.workspace.getWorkspaceFolder(vscode.Uri.parse(item.scopeUri)) : undefined;
            return serverSettings(folder);
          });
        },
      },
      // the code lens on `revision =` runs the server's showGraph: show what it returns
      executeCommand: async (command, args, next) => {
        const result = await next(command, args);
        if (command === SHOW_GRAPH && typeof result === "string") {
          GraphPanel.show(extensionUri, result, fetchGraphView, () => environments);
        }
        return result;
      },
    },
  };
  const c = new LanguageClient("migrationLsp", "Migration LSP", serverOptions, clientOptions);
  client = c;
  c.registerFeature(new GraphChangedFeature());
  // the status bar follows this server's own news, not every diagnostics change in the window
  c.onNotification(GRAPH_CHANGED, () => {
    if (client === c) {
      scheduleStatus(100);
    }
  });
  c.onDidChangeState((e) => {
    if (e.newState === State.Running) {
      scheduleStatus(0);
    } else if (e.newState === State.Stopped && client === c) {
      setStatusError("server stopped");
    }
  });
  try {
    await c.start();
  } catch (err) {
    client = undefined;
    setStatusError("server failed to start");
    notifyError(
      `Migration LSP: ${[server.command, ...server.args].join(" ")} (${server.source}) failed to start: ${err}. ` +
        "See the output; check migrationLsp.importStrategy and migrationLsp.server.command.",
    );
  }
}

async function stopClient(): Promise<void> {
  const c = client;
  client = undefined;
  if (c) {
    try {
      await c.stop(5000);
    } catch {
      // already gone
    }
  }
}

/** Folders added or removed: the language client tells the running server itself
 * (workspace/didChangeWorkspaceFolders: it discovers the new folders and drops the removed ones,
 * the others keep their state), so no restart; the new folders' interpreters are looked up and the
 * settings pushed (the server then asks each folder's own again). Only a workspace without a
 * running server (no Alembic project until now) looks again whether to start one. */
async function foldersChanged(): Promise<void> {
  await starting;
  if (!client) {
    void restart();
    return;
  }
  await refreshInterpreters();
  pushSettings();
}

/** Stop (if running), find the server again, start it; serialised, and never left rejected. */
function restart(): Promise<void> {
  starting = starting.then(async () => {
    await stopClient();
    await startClient();
  }).catch((err) => {
    output.error(`start failed: ${err}`);
    setStatusError("server failed to start");
  });
  return starting;
}

// ------------------------------------------------------------------ graph and status bar

async function fetchGraph(): Promise<string | undefined> {
  await starting;
  if (!client || client.state !== State.Running) {
    return undefined;
  }
  try {
    const text = await client.sendRequest(ExecuteCommandRequest.type, { command: SHOW_GRAPH, arguments: [] });
    return typeof text === "string" ? text : undefined;
  } catch (err) {
    output.warn(`showGraph failed: ${err}`);
    return undefined;
  }
}

/** The server's revision graph as JSON (`migration-lsp/graph`); undefined when it cannot say. */
async function fetchEnvironments(): Promise<Environment[] | undefined> {
  await starting;
  const c = client;
  if (!c || c.state !== State.Running) {
    return undefined;
  }
  try {
    return environmentsOf(await c.sendRequest(GRAPH, {}));
  } catch (err) {
    output.warn(`${GRAPH} failed (a server older than the extension?): ${err}`);
    return undefined;
  }
}

/** What the graph view shows: the mermaid text, with the environments (its summary) fetched anew. */
async function fetchGraphView(): Promise<string | undefined> {
  const [text, envs] = await Promise.all([fetchGraph(), fetchEnvironments()]);
  if (envs !== undefined) {
    environments = envs;
    renderStatus();
  }
  return text;
}

/** "main +2 −1": the base branch's short name, revisions this branch adds, revisions it lacks. */
function describeBase(base: BaseStatus): string {
  const name = base.ref.replace(/^refs\/(remotes|heads)\//, "").replace(/^origin\//, "");
  return `${name}${base.ahead ? ` +${base.ahead}` : ""}${base.behind ? ` −${base.behind}` : ""}`;
}

function setStatusError(text: string): void {
  status.text = `$(error) Alembic: ${text}`;
  status.tooltip = "Migration LSP: click to see the output";
  status.command = "migrationLsp.showOutput";
  status.backgroundColor = new vscode.ThemeColor("statusBarItem.errorBackground");
  status.show();
}

function activeEnvironment(): Environment | undefined {
  const editor = vscode.window.activeTextEditor;
  if (editor) {
    const file = editor.document.uri.fsPath;
    const env = environments.find((e) => e.files.has(file));
    if (env) {
      return env;
    }
  }
  return environments.length === 1 ? environments[0] : undefined;
}

function renderStatus(): void {
  if (!client || client.state !== State.Running) {
    return;
  }
  status.command = "migrationLsp.showRevisionGraph";
  status.backgroundColor = undefined;
  const env = activeEnvironment();
  if (environments.length === 0) {
    status.hide();
    return;
  }
  const md = new vscode.MarkdownString(undefined, true);
  const describe = (e: Environment) =>
    `**${e.name}**: ` + (e.heads.length ? e.heads.map((h) => `\`${h.id}\` ${h.message}`).join(", ") : "no revisions");
  if (env) {
    const heads = env.heads;
    const label = environments.length > 1 ? `${env.name}: ` : "";
    if (heads.length === 1) {
      status.text = `$(git-commit) ${label}${heads[0].id.slice(0, 12)}`;
    } else {
      status.text = `$(warning) ${label}${heads.length} heads`;
      status.backgroundColor = heads.length > 1 ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
    }
    md.appendMarkdown(`Alembic head${heads.length === 1 ? "" : "s"} of ${describe(env)}`);
    const base = env.base;
    if (base) {
      status.text += ` · ${describeBase(base)}`;
      md.appendMarkdown(`\n\nBase branch \`${base.ref}\`: ${base.ahead} revision${base.ahead === 1 ? "" : "s"} ` +
        `here and not there, ${base.behind} there and not here.`);
    }
  } else {
    const many = environments.filter((e) => e.heads.length > 1).length;
    status.text = `$(git-commit) ${environments.length} environments` + (many ? ` (${many} with several heads)` : "");
    md.appendMarkdown(environments.map(describe).join("\n\n"));
  }
  md.appendMarkdown(`\n\n---\n\nServer: ${current?.version || current?.source || "?"}. Click to show the revision graph.`);
  status.tooltip = md;
  status.show();
}

async function updateStatus(): Promise<void> {
  const envs = await fetchEnvironments();
  if (envs === undefined) {
    return;
  }
  environments = envs;
  renderStatus();
}

function scheduleStatus(delayMs = 400): void {
  if (statusTimer) {
    clearTimeout(statusTimer);
  }
  statusTimer = setTimeout(() => void updateStatus(), delayMs);
}

// ------------------------------------------------------------------ commands

async function showRevisionGraph(): Promise<void> {
  const text = await fetchGraphView();
  if (text === undefined) {
    void vscode.window.showWarningMessage("Migration LSP: the language server is not running.", "Show Output").then((c) => {
      if (c) {
        output.show(true);
      }
    });
    return;
  }
  GraphPanel.show(extensionUri, text, fetchGraphView, () => environments);
}

async function createNextRevision(): Promise<void> {
  await starting;
  let editor = vscode.window.activeTextEditor;
  if (!editor || !revisionOf(editor.document.getText())) {
    // not in a migration file: open the head of the active environment and create on top of it
    const head = activeEnvironment()?.heads[0]; // (the server's graph says where its file is)
    const target = head?.uri;
    if (!target) {
      void vscode.window.showInformationMessage("Migration LSP: open a migration file first; the new revision goes on top of its branch's head.");
      return;
    }
    editor = await vscode.window.showTextDocument(target);
  }
  const doc = editor.document;
  const whole = new vscode.Range(0, 0, doc.lineCount, 0);
  // the server lists actions that create a file without their edit (it renders the template
  // only on codeAction/resolve): ask VS Code to resolve them (at most 3 are listed)
  const actions = (await vscode.commands.executeCommand<(vscode.CodeAction | vscode.Command)[]>(
    "vscode.executeCodeActionProvider", doc.uri, whole, CREATE_NEXT_KIND, 3)) ?? [];
  const ours = actions.filter((a) => "title" in a && /^Create next revision/.test(a.title));
  if (ours.length === 0) {
    void vscode.window.showInformationMessage("Migration LSP: no revision can be created here (is this file part of the revision graph?).");
    return;
  }
  let chosen = ours[0];
  if (ours.length > 1) {
    const pick = await vscode.window.showQuickPick(ours.map((a) => ({ label: a.title, action: a })), { placeHolder: "Create the new revision on top of" });
    if (!pick) {
      return;
    }
    chosen = pick.action;
  }
  await applyAction(chosen, doc.uri);
}

async function applyAction(action: vscode.CodeAction | vscode.Command, from: vscode.Uri): Promise<void> {
  const isCommand = typeof (action as vscode.Command).command === "string";
  if (isCommand) {
    const cmd = action as vscode.Command;
    await vscode.commands.executeCommand(cmd.command, ...(cmd.arguments ?? []));
    return;
  }
  const ca = action as vscode.CodeAction;
  if (ca.edit) {
    const ok = await vscode.workspace.applyEdit(ca.edit);
    if (!ok) {
      void vscode.window.showErrorMessage("Migration LSP: the edit could not be applied (does the file already exist?).");
      return;
    }
    const created = ca.edit.entries().map(([uri]) => uri).find((uri) => uri.toString() !== from.toString());
    if (created) {
      await vscode.window.showTextDocument(created);
    }
  }
  if (ca.command) {
    await vscode.commands.executeCommand(ca.command.command, ...(ca.command.arguments ?? []));
  }
}

// ------------------------------------------------------------------ activation

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  extensionUri = context.extensionUri;
  extensionPath = context.extensionPath;
  output = vscode.window.createOutputChannel("Migration LSP", { log: true });
  status = vscode.window.createStatusBarItem("migrationLsp.heads", vscode.StatusBarAlignment.Left, 10);
  status.name = "Alembic heads";
  context.subscriptions.push(output, status, { dispose: () => void stopClient() }, { dispose: stopWatchingForAlembic });

  context.subscriptions.push(
    vscode.commands.registerCommand("migrationLsp.restartServer", () => restart()),
    vscode.commands.registerCommand("migrationLsp.showRevisionGraph", () => showRevisionGraph()),
    vscode.commands.registerCommand("migrationLsp.createNextRevision", () => createNextRevision()),
    vscode.commands.registerCommand("migrationLsp.showOutput", () => output.show(true)),
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (RESTART_SETTINGS.some((key) => e.affectsConfiguration(`migrationLsp.${key}`))) {
        output.info("the server's command or import strategy changed: restarting the server");
        void restart();
      } else if (SERVER_SETTINGS.some((key) => e.affectsConfiguration(`migrationLsp.${key}`))) {
        pushSettings();
      }
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      output.info("workspace trusted: restarting the server (models may now be imported)");
      void restart();
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => void foldersChanged()),
    vscode.window.onDidChangeActiveTextEditor(() => renderStatus()),
  );

  const python = await pythonExtensionApi();
  if (python) {
    context.subscriptions.push(python.environments.onDidChangeActiveEnvironmentPath(async (e) => {
      // the server runs on the first folder's interpreter (or the workspace's): a change there
      // restarts it; another folder's interpreter only imports that folder's models
      const folder = e.resource && ("uri" in e.resource ? e.resource : vscode.workspace.getWorkspaceFolder(e.resource));
      const first = vscode.workspace.workspaceFolders?.[0];
      const runsServer = !folder || !first || folder.uri.toString() === first.uri.toString();
      if (runsServer && discovery && (discovery.usedPythonExtension || !discovery.server) && !current?.source.startsWith("setting")) {
        output.info(`Python interpreter changed to ${e.path}: restarting the server`);
        void restart();
      } else {
        output.info(`Python interpreter of ${folder?.name ?? "the workspace"} changed to ${e.path}`);
        await refreshInterpreters(); // the server's own Python stays: only the models' changes
        pushSettings();
      }
    }));
  }

  void restart(); // activation does not wait for the server
}

export async function deactivate(): Promise<void> {
  if (statusTimer) {
    clearTimeout(statusTimer);
  }
  await stopClient();
}
