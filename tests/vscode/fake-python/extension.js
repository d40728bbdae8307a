// Test-only stand-in for ms-python.python: the part of its API the Migration LSP extension
// uses (environments.getActiveEnvironmentPath / resolveEnvironment / onDidChangeActiveEnvironmentPath),
// with "the selected interpreter" taken from $MIGRATION_LSP_E2E_PYTHON.
const vscode = require("vscode");

exports.activate = () => {
  const python = process.env.MIGRATION_LSP_E2E_PYTHON;
  const changed = new vscode.EventEmitter();
  const active = python ? { id: python, path: python } : undefined;
  return {
    environments: {
      getActiveEnvironmentPath: () => active,
      resolveEnvironment: async () => (active ? { executable: { uri: vscode.Uri.file(python) } } : undefined),
      onDidChangeActiveEnvironmentPath: changed.event,
    },
  };
};
exports.deactivate = () => {};
