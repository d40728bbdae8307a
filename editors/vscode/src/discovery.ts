// Where the language server comes from, in this order:
//   1. the `migrationLsp.server.command` setting;
//   2. the interpreter selected in the Python extension (ms-python.python), as `<python> -m migration_lsp serve`,
//      when migration_lsp is importable there;
//   3. `migration-lsp` on PATH.
// In an untrusted workspace the setting is read from user settings only (it is a restricted
// configuration) and an interpreter that lives inside the workspace is not run.
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as vscode from "vscode";

export interface ServerCommand {
  command: string;
  args: string[];
  /** Human-readable origin, shown in the output channel and the status-bar tooltip. */
  source: string;
}

export interface Discovery {
  server?: ServerCommand;
  /** What was tried and why it did not work (for the error notification). */
  notes: string[];
  /** True when the Python extension's interpreter was consulted (its changes then matter). */
  usedPythonExtension: boolean;
}

const EXE = process.platform === "win32" ? ["migration-lsp.exe", "migration-lsp.cmd", "migration-lsp"] : ["migration-lsp"];

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
  if (name.includes("/") || name.includes(path.sep)) {
    return isExecutable(name) ? name : undefined;
  }
  const names = process.platform === "win32" && !path.extname(name) ? [name + ".exe", name + ".cmd", name] : [name];
  for (const dir of envPath.split(path.delimiter)) {
    if (!dir) {
      continue;
    }
    for (const n of names) {
      const candidate = path.join(dir, n);
      if (isExecutable(candidate)) {
        return candidate;
      }
    }
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
    parts.push(...(looksLikePython(parts[0]) ? ["-m", "migration_lsp", "serve"] : ["serve"]));
  }
  return parts;
}

function expandHome(p: string): string {
  return p.startsWith("~/") ? path.join(process.env.HOME ?? "~", p.slice(2)) : p;
}

function insideWorkspace(file: string): boolean {
  const real = (p: string) => {
    try {
      return fs.realpathSync(p);
    } catch {
      return path.resolve(p);
    }
  };
  const f = real(file);
  return (vscode.workspace.workspaceFolders ?? []).some((folder) => {
    const root = real(folder.uri.fsPath);
    const rel = path.relative(root, f);
    return rel !== "" && !rel.startsWith("..") && !path.isAbsolute(rel);
  });
}

function run(command: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { timeout: timeoutMs, windowsHide: true }, (error, stdout, stderr) => {
      resolve({ ok: !error, output: `${stdout}${stderr}`.trim() });
    });
  });
}

interface PythonExtensionApi {
  environments?: {
    getActiveEnvironmentPath(resource?: vscode.Uri): { id: string; path: string } | undefined;
    resolveEnvironment(env: { id: string; path: string } | string): Promise<
      { executable?: { uri?: vscode.Uri } } | undefined
    >;
    onDidChangeActiveEnvironmentPath?: vscode.Event<unknown>;
  };
}

export async function pythonExtensionApi(): Promise<PythonExtensionApi | undefined> {
  const ext = vscode.extensions.getExtension<PythonExtensionApi>("ms-python.python");
  if (!ext) {
    return undefined;
  }
  try {
    const api = ext.isActive ? ext.exports : await ext.activate();
    return api?.environments ? api : undefined;
  } catch {
    return undefined;
  }
}

async function selectedInterpreter(api: PythonExtensionApi, folder?: vscode.Uri): Promise<string | undefined> {
  const envs = api.environments!;
  const active = envs.getActiveEnvironmentPath(folder);
  if (!active) {
    return undefined;
  }
  try {
    const resolved = await envs.resolveEnvironment(active);
    const exe = resolved?.executable?.uri?.fsPath;
    if (exe) {
      return exe;
    }
  } catch {
    // fall back to the path as given
  }
  return active.path || undefined;
}

export async function discoverServer(): Promise<Discovery> {
  const notes: string[] = [];
  const config = vscode.workspace.getConfiguration("migrationLsp");
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;

  // 1. the setting
  const configured = normaliseCommand(config.get("server.command"));
  if (configured) {
    let [cmd, ...args] = configured;
    cmd = expandHome(cmd);
    if (folder && !path.isAbsolute(cmd) && (cmd.includes("/") || cmd.includes(path.sep))) {
      cmd = path.join(folder.fsPath, cmd); // relative paths are relative to the (first) workspace folder
    }
    const resolved = which(cmd);
    if (resolved) {
      return { server: { command: resolved, args, source: "setting migrationLsp.server.command" }, notes, usedPythonExtension: false };
    }
    notes.push(`migrationLsp.server.command is set to "${cmd}", which is not an executable file.`);
    // an explicit setting that does not work is an error to report, not something to paper over
    return { notes, usedPythonExtension: false };
  }

  // 2. the Python extension's interpreter
  let usedPythonExtension = false;
  const api = await pythonExtensionApi();
  if (api) {
    usedPythonExtension = true;
    const python = await selectedInterpreter(api, folder);
    if (!python) {
      notes.push("The Python extension has no interpreter selected.");
    } else if (!vscode.workspace.isTrusted && insideWorkspace(python)) {
      notes.push(`The selected interpreter ${python} is inside this untrusted workspace, so it is not run.`);
    } else {
      const probe = await run(python, ["-c", "import migration_lsp"], 15000);
      if (probe.ok) {
        return {
          server: { command: python, args: ["-m", "migration_lsp", "serve"], source: `Python extension interpreter ${python}` },
          notes,
          usedPythonExtension,
        };
      }
      notes.push(`The interpreter selected in the Python extension (${python}) cannot import migration_lsp.`);
    }
  }

  // 3. PATH
  for (const name of EXE) {
    const onPath = which(name);
    if (onPath) {
      return { server: { command: onPath, args: ["serve"], source: `${onPath} (on PATH)` }, notes, usedPythonExtension };
    }
  }
  notes.push("No migration-lsp executable on PATH.");
  return { notes, usedPythonExtension };
}
