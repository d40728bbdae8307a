// Where the language server comes from:
//   1. the `migrationLsp.server.command` setting (user or machine settings in an untrusted workspace);
//   2. `migrationLsp.importStrategy`:
//      useBundled (default): the server bundled in the extension (bundled/libs), started as
//        `<python> -I bundled/tool/server.py serve` with the first Python >= 3.10 of: the interpreter
//        selected in the Python extension (trusted workspace only), `python3` / `python` on PATH;
//      fromEnvironment: `<python> -I -m migration_lsp serve` with the selected interpreter when it
//        has migration_lsp, else `migration-lsp` on PATH.
// Every server starts in the extension's own folder, never in the workspace, and Python always
// with -I (isolated): neither the working directory nor PYTHONPATH is on sys.path, so a workspace
// `argparse.py` or `migration_lsp/` cannot replace a module. In an untrusted workspace nothing
// that lives inside the workspace is run (no `.venv/bin/python` of the workspace).
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";
import { EnvironmentPath, PythonExtension, Resource } from "@vscode/python-extension";

export interface ServerCommand {
  command: string;
  args: string[];
  /** Human-readable origin, shown in the output channel and the status-bar tooltip. */
  source: string;
  /** e.g. "migration-lsp 0.1.0 (bundled) on Python 3.11.2" */
  version: string;
}

export interface Discovery {
  server?: ServerCommand;
  /** What was tried and why it did not work (for the error notification). */
  notes: string[];
  /** True when the Python extension's interpreter was consulted (its changes then matter). */
  usedPythonExtension: boolean;
  /** No usable Python >= 3.10 was found (the bundled server cannot run). */
  noPython?: boolean;
}

export interface BundleInfo {
  migrationLsp?: string;
  packages?: Record<string, string>;
}

export const MIN_PYTHON: [number, number] = [3, 10];
const EXE = process.platform === "win32" ? ["migration-lsp.exe", "migration-lsp.cmd", "migration-lsp"] : ["migration-lsp"];
const PYTHONS = process.platform === "win32" ? ["python.exe", "python3.exe"] : ["python3", "python"];

export function isExecutable(file: string): boolean {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) {
      return false;
    }
    if (process.platform === "win32") {
      return true;
    }
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function which(name: string, envPath = process.env.PATH ?? ""): string | undefined {
  return whichAll(name, envPath)[0];
}

/** Every executable `name` on PATH, in order (absolute directories only: a relative entry
 * would be resolved against the working directory). */
export function whichAll(name: string, envPath = process.env.PATH ?? ""): string[] {
  if (name.includes("/") || name.includes(path.sep)) {
    return isExecutable(name) ? [name] : [];
  }
  const found: string[] = [];
  const names = process.platform === "win32" && !path.extname(name) ? [name + ".exe", name + ".cmd", name] : [name];
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir || !path.isAbsolute(dir)) {
      continue;
    }
    for (const n of names) {
      const candidate = path.join(dir, n);
      if (isExecutable(candidate) && !found.includes(candidate)) {
        found.push(candidate);
      }
    }
  }
  return found;
}

/** The first `name` on PATH that may run: in an untrusted workspace none from inside it. */
function allowedOnPath(name: string, notes: string[]): string | undefined {
  for (const found of whichAll(name)) {
    if (!vscode.workspace.isTrusted && insideWorkspace(found)) {
      notes.push(`${found} (on PATH) is inside this untrusted workspace, so it is not run.`);
      continue;
    }
    return found;
  }
  return undefined;
}

function looksLikePython(exe: string): boolean {
  return /^python(\d+(\.\d+)?)?(\.exe)?$/i.test(path.basename(exe));
}

/** The setting as [command, ...args], with the default arguments added when only an executable is given. */
export function normaliseCommand(value: unknown): string[] | undefined {
  let parts: string[];
  if (Array.isArray(value)) {
    parts = value.filter((v): v is string => typeof v === "string" && v.trim() !== "");
  } else if (typeof value === "string" && value.trim() !== "") {
    const v = value.trim();
    // a path that exists as written (it may contain spaces) is one executable; otherwise split on blanks
    parts = fs.existsSync(v) ? [v] : v.split(/\s+/);
  } else {
    return undefined;
  }
  if (parts.length === 0) {
    return undefined;
  }
  if (parts.length === 1) {
    parts.push(...(looksLikePython(parts[0]) ? ["-I", "-m", "migration_lsp", "serve"] : ["serve"]));
  }
  return parts;
}

function expandHome(p: string): string {
  return p.startsWith("~/") ? path.join(process.env.HOME ?? "~", p.slice(2)) : p;
}

/** Whether `file` lives in a workspace folder, as written or once symlinks are followed (a
 * workspace `.venv/bin/python` is a symlink to a system binary, but runs the workspace's site-packages). */
export function insideWorkspace(file: string): boolean {
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  const forms = [path.resolve(file), path.join(real(path.dirname(file)), path.basename(file)), real(file)];
  return (vscode.workspace.workspaceFolders ?? []).some((folder) => {
    const roots = [path.resolve(folder.uri.fsPath), real(folder.uri.fsPath)];
    return forms.some((f) => roots.some((root) => {
      const rel = path.relative(root, f);
      return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
    }));
  });
}

/** Runs a probe outside the workspace (cwd: the extension's folder). */
function run(command: string, args: string[], cwd: string, timeoutMs = 15000): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { cwd, timeout: timeoutMs, windowsHide: true }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stdout}${stderr}`.trim() });
    });
  });
}

/** The Python extension's API (the typed `@vscode/python-extension` facade), or undefined when
 * the extension is not installed, is disabled, fails to activate, or is too old to have the
 * environments API: every caller then falls back to what it finds without it. */
export async function pythonExtensionApi(): Promise<PythonExtension | undefined> {
  try {
    const api = await PythonExtension.api(); // throws when the extension is not installed
    return api?.environments ? api : undefined;
  } catch {
    return undefined;
  }
}

/** The interpreter selected in the Python extension for `resource` (a file or a workspace
 * folder: in a multi-root workspace each folder has its own), when there is one. */
export async function selectedInterpreter(resource?: Resource, api?: PythonExtension): Promise<string | undefined> {
  const envs = (api ?? (await pythonExtensionApi()))?.environments;
  if (!envs) {
    return undefined;
  }
  let active: EnvironmentPath | undefined;
  try {
    active = envs.getActiveEnvironmentPath(resource);
  } catch {
    return undefined;
  }
  if (!active) {
    return undefined;
  }
  try {
    const exe = (await envs.resolveEnvironment(active))?.executable.uri?.fsPath;
    if (exe) {
      return exe;
    }
  } catch {
    // fall back to the path as given
  }
  return active.path || undefined;
}

/** "3.11.2" of a Python interpreter (run isolated, outside the workspace), or undefined. */
async function pythonVersion(python: string, cwd: string): Promise<string | undefined> {
  const probe = await run(python, ["-I", "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"], cwd);
  const m = probe.ok ? /^(\d+)\.(\d+)\.(\d+)$/m.exec(probe.output) : null;
  return m ? m[0] : undefined;
}

function atLeast(version: string, [major, minor]: [number, number]): boolean {
  const [a, b] = version.split(".").map(Number);
  return a > major || (a === major && b >= minor);
}

export function bundleInfo(extensionPath: string): BundleInfo | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(extensionPath, "bundled", "libs", ".bundle.json"), "utf8")) as BundleInfo;
  } catch {
    return undefined;
  }
}

/** Python candidates for the server, in order, without the ones an untrusted workspace must not run. */
async function pythonCandidates(folder: vscode.Uri | undefined, notes: string[]): Promise<{ list: string[]; usedPythonExtension: boolean }> {
  const list: string[] = [];
  let usedPythonExtension = false;
  if (vscode.workspace.isTrusted) {
    usedPythonExtension = (await pythonExtensionApi()) !== undefined;
    const selected = usedPythonExtension ? await selectedInterpreter(folder) : undefined;
    if (selected) {
      list.push(selected);
    }
  }
  for (const name of PYTHONS) {
    const found = allowedOnPath(name, notes);
    if (found && !list.includes(found)) {
      list.push(found);
    }
  }
  return { list, usedPythonExtension };
}

export async function discoverServer(extensionPath: string): Promise<Discovery> {
  const notes: string[] = [];
  const config = vscode.workspace.getConfiguration("migrationLsp");
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  const trusted = vscode.workspace.isTrusted;

  // 1. the setting; in an untrusted workspace only the user's (and machine's) own value counts
  const inspected = config.inspect("server.command");
  const raw = trusted ? config.get("server.command") : inspected?.globalValue;
  const configured = normaliseCommand(raw);
  if (configured) {
    let [cmd, ...args] = configured;
    cmd = expandHome(cmd);
    if (folder && !path.isAbsolute(cmd) && (cmd.includes("/") || cmd.includes(path.sep))) {
      cmd = path.join(folder.fsPath, cmd); // relative paths are relative to the (first) workspace folder
    }
    const resolved = which(cmd);
    if (resolved && !trusted && insideWorkspace(resolved)) {
      notes.push(`migrationLsp.server.command (${resolved}) is inside this untrusted workspace, so it is not run.`);
      return { notes, usedPythonExtension: false };
    }
    if (resolved) {
      return { server: { command: resolved, args, source: "setting migrationLsp.server.command", version: "" }, notes, usedPythonExtension: false };
    }
    notes.push(`migrationLsp.server.command is set to "${cmd}", which is not an executable file.`);
    // an explicit setting that does not work is an error to report, not something to paper over
    return { notes, usedPythonExtension: false };
  }

  const strategy = config.get<string>("importStrategy") === "fromEnvironment" ? "fromEnvironment" : "useBundled";
  const { list, usedPythonExtension } = await pythonCandidates(folder, notes);

  if (strategy === "fromEnvironment") {
    for (const python of list) {
      const probe = await run(python, ["-I", "-c", "import migration_lsp; print(migration_lsp.__version__)"], extensionPath);
      if (probe.ok) {
        const version = `migration-lsp ${probe.output.split("\n").pop()} (from ${python})`;
        return { server: { command: python, args: ["-I", "-m", "migration_lsp", "serve"], source: python, version }, notes, usedPythonExtension };
      }
      notes.push(`${python} cannot import migration_lsp.`);
    }
    for (const name of EXE) {
      const onPath = allowedOnPath(name, notes);
      if (onPath) {
        return { server: { command: onPath, args: ["serve"], source: `${onPath} (on PATH)`, version: "" }, notes, usedPythonExtension };
      }
    }
    notes.push("No migration-lsp executable on PATH (migrationLsp.importStrategy is fromEnvironment).");
    return { notes, usedPythonExtension };
  }

  // useBundled
  const launcher = path.join(extensionPath, "bundled", "tool", "server.py");
  const bundle = bundleInfo(extensionPath);
  if (!bundle || !fs.existsSync(launcher)) {
    notes.push(`This build of the extension has no bundled server (${path.join(extensionPath, "bundled")}); ` +
      "build it with `make vscode` or set migrationLsp.importStrategy to fromEnvironment.");
    return { notes, usedPythonExtension };
  }
  const tooOld: string[] = [];
  for (const python of list) {
    const version = await pythonVersion(python, extensionPath);
    if (!version) {
      tooOld.push(`${python} (does not run)`);
    } else if (!atLeast(version, MIN_PYTHON)) {
      tooOld.push(`${python} (Python ${version})`);
    } else {
      return {
        server: {
          command: python,
          args: ["-I", launcher, "serve"],
          source: `bundled server on ${python}`,
          version: `migration-lsp ${bundle.migrationLsp ?? "?"} (bundled) on Python ${version}`,
        },
        notes,
        usedPythonExtension,
      };
    }
  }
  notes.push(`The bundled server needs Python ${MIN_PYTHON.join(".")} or newer; ` +
    (tooOld.length ? `found only ${tooOld.join(", ")}.` : "no python3 on PATH" + (trusted ? " and no interpreter selected in the Python extension." : ".")));
  return { notes, usedPythonExtension, noPython: true };
}
