// Test-only stand-in for ms-python.python: the part of its API the Migration LSP extension
// uses through @vscode/python-extension (environments.getActiveEnvironmentPath(resource) /
// resolveEnvironment / onDidChangeActiveEnvironmentPath). $MIGRATION_LSP_E2E_PYTHON is the selected
// interpreter, or a JSON object {"<folder path>": "<interpreter>"}: each workspace folder's own
// (multi-root). The command `fakePython.select` (folder path, interpreter) selects another one for
// a folder, as the interpreter picker does, and fires onDidChangeActiveEnvironmentPath.
const vscode = require("vscode");

exports.activate = (context) => {
  const raw = process.env.MIGRATION_LSP_E2E_PYTHON || "";
  const selected = raw.startsWith("{") ? JSON.parse(raw) : {};
  const single = raw.startsWith("{") ? "" : raw;
  const changed = new vscode.EventEmitter();
  const folderOf = (resource) => {
    if (!resource) return (vscode.workspace.workspaceFolders || [])[0];
    return resource.uri ? resource : vscode.workspace.getWorkspaceFolder(resource);
  };
  const pythonOf = (resource) => {
    const folder = folderOf(resource);
    return (folder && selected[folder.uri.fsPath]) || single || undefined;
  };
  context.subscriptions.push(vscode.commands.registerCommand("fakePython.select", (folderPath, python) => {
    selected[folderPath] = python;
    const folder = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(folderPath));
    changed.fire({ id: python, path: python, resource: folder });
  }));
  return {
    ready: Promise.resolve(),
    environments: {
      getActiveEnvironmentPath: (resource) => {
        const python = pythonOf(resource);
        return python ? { id: python, path: python } : undefined;
      },
      resolveEnvironment: async (env) => {
        const python = typeof env === "string" ? env : env && env.path;
        return python ? { id: python, path: python, executable: { uri: vscode.Uri.file(python) } } : undefined;
      },
      onDidChangeActiveEnvironmentPath: changed.event,
    },
  };
};
exports.deactivate = () => {};
