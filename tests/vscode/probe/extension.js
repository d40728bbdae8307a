// Test-only extension: drives the real VS Code API against the installed Migration LSP
// extension and writes what it saw as JSON to $MIGRATION_LSP_E2E_OUT.
// $MIGRATION_LSP_E2E_FILE is a head revision file of the fixture; $MIGRATION_LSP_E2E_SYNC is a
// directory for the screenshot handshake with the driver (probe writes NAME.ready, waits for NAME.done).
const vscode = require("vscode");
const fs = require("fs");
const path = require("path");

const EXTENSION_ID = "migration-lsp.migration-lsp";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(fn, timeoutMs, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (value || Date.now() > end) return value;
    await sleep(stepMs);
  }
}

function text(contents) {
  return contents.map((c) => (typeof c === "string" ? c : c.value)).join("\n");
}

function positionOf(doc, regex) {
  for (let n = 0; n < doc.lineCount; n++) {
    const m = regex.exec(doc.lineAt(n).text);
    if (m) return { line: n, match: m };
  }
  throw new Error(`${regex} not found in ${doc.fileName}`);
}

async function handshake(name, timeoutMs = 15000) {
  const dir = process.env.MIGRATION_LSP_E2E_SYNC;
  if (!dir) return;
  fs.writeFileSync(path.join(dir, `${name}.ready`), "");
  await until(() => fs.existsSync(path.join(dir, `${name}.done`)), timeoutMs);
}

/** A multi-root workspace: each folder's models are imported with the interpreter selected for
 * that folder; then another one is selected for the second folder ($MIGRATION_LSP_E2E_SWITCH). */
async function multiRoot(res, step) {
  const codeOf = (d) => String(d.code && d.code.value !== undefined ? d.code.value : d.code);
  const folders = vscode.workspace.workspaceFolders || [];
  res.folders = folders.map((f) => f.name);
  const findings = (folder) => vscode.languages.getDiagnostics()
    .filter(([u]) => u.fsPath.startsWith(folder.uri.fsPath + path.sep))
    .flatMap(([u, ds]) => ds.map((d) => `${path.relative(folder.uri.fsPath, u.fsPath)}: ${codeOf(d)} ${d.message}`));
  const all = () => Object.fromEntries(folders.map((f) => [f.name, findings(f)]));
  const models = (lines) => lines.some((l) => /: M00\d /.test(l));
  await until(() => folders.length > 1 && folders.every((f) => models(findings(f))), 90000);
  res.before = all();
  step("models");
  const second = folders[1];
  await vscode.commands.executeCommand("fakePython.select", second.uri.fsPath, process.env.MIGRATION_LSP_E2E_SWITCH);
  await until(() => findings(second).some((l) => /: M004 /.test(l)), 60000);
  res.after = all();
  step("switched");
  // the second folder is removed from the workspace: the running server drops it (its
  // diagnostics are cleared), the first folder's stand, and nothing restarts the server
  vscode.workspace.updateWorkspaceFolders(1, 1);
  await until(() => (vscode.workspace.workspaceFolders || []).length === 1 && findings(second).length === 0, 30000);
  res.foldersAfterRemoval = (vscode.workspace.workspaceFolders || []).map((f) => f.name);
  res.afterRemoval = all();
  step("removed");
}

async function run() {
  const out = process.env.MIGRATION_LSP_E2E_OUT;
  const target = process.env.MIGRATION_LSP_E2E_FILE;
  const res = { steps: [], extensionHostPath: process.env.PATH };
  const t0 = Date.now();
  const step = (name) => res.steps.push([name, Date.now() - t0]);
  try {
    const ext = vscode.extensions.getExtension(EXTENSION_ID);
    res.extensionInstalled = !!ext;
    // activation must come from the extension's own activation events (workspaceContains:**/alembic.ini)
    res.extensionActive = !!(await until(() => ext && ext.isActive, 20000));
    step("active");
    if (process.env.MIGRATION_LSP_E2E_EXPECT === "multi-root") {
      await multiRoot(res, step);
      throw Object.assign(new Error("done"), { expected: true });
    }
    if (process.env.MIGRATION_LSP_E2E_EXPECT === "no-server") {
      // nothing to find the server with: the extension must say so (the driver reads the notification)
      await vscode.window.showTextDocument(vscode.Uri.file(target));
      await sleep(2000);
      throw Object.assign(new Error("expected"), { expected: true });
    }

    const uri = vscode.Uri.file(target);
    const doc = await vscode.workspace.openTextDocument(uri);
    const editor = await vscode.window.showTextDocument(doc);
    res.languageId = doc.languageId;
    const versionsDir = path.dirname(target);
    const before = new Set(fs.readdirSync(versionsDir));

    // 1. diagnostics on the head file
    const diags = await until(() => {
      const d = vscode.languages.getDiagnostics(uri);
      return d.some((x) => String(x.code && x.code.value !== undefined ? x.code.value : x.code) === "G001") ? d : null;
    }, 30000) || vscode.languages.getDiagnostics(uri);
    res.diagnostics = diags.map((d) => ({
      code: String(d.code && d.code.value !== undefined ? d.code.value : d.code),
      severity: d.severity, source: d.source, line: d.range.start.line, message: d.message,
    }));
    step("diagnostics");

    // 2. hover on the id inside down_revision
    const down = positionOf(doc, /^down_revision\b.*?['"]([0-9a-f]+)['"]/);
    res.downRevisionId = down.match[1];
    const hoverPos = new vscode.Position(down.line, down.match.index + down.match[0].length - 3);
    const hovers = await until(async () => {
      const h = await vscode.commands.executeCommand("vscode.executeHoverProvider", uri, hoverPos);
      return h && h.length ? h : null;
    }, 10000, 200) || [];
    res.hover = hovers.map((h) => text(h.contents));
    step("hover");

    // 3. code actions on the `revision =` line
    const revLine = positionOf(doc, /^revision\b/).line;
    const actions = await vscode.commands.executeCommand(
      "vscode.executeCodeActionProvider", uri, doc.lineAt(revLine).range, vscode.CodeActionKind.QuickFix.value,
      10) || [];  // resolved: "Merge heads" is listed without its edit (rendered on codeAction/resolve)
    res.codeActions = actions.map((a) => a.title);
    step("codeActions");

    // the screenshot: the head's G001 squiggle with its hover
    const revId = positionOf(doc, /^revision\b.*?['"]([0-9a-f]+)['"]/);
    const at = new vscode.Position(revLine, revId.match.index + revId.match[0].length - 4);
    editor.selection = new vscode.Selection(at, at);
    editor.revealRange(new vscode.Range(at, at), vscode.TextEditorRevealType.InCenter);
    await vscode.commands.executeCommand("workbench.action.focusActiveEditorGroup");
    await handshake("notifications"); // the driver reads the notifications shown so far, then they are cleared
    await vscode.commands.executeCommand("notifications.clearAll");
    await vscode.commands.executeCommand("editor.action.showHover");
    await handshake("hover");
    await vscode.commands.executeCommand("editor.action.hideHover").then(undefined, () => undefined);

    // 4. apply "Merge heads", save the new file, check it on disk
    const merge = actions.find((a) => /^Merge heads/.test(a.title));
    if (merge && merge.edit) {
      res.mergeApplied = await vscode.workspace.applyEdit(merge.edit);
      const created = merge.edit.entries().map(([u]) => u).filter((u) => u.fsPath !== uri.fsPath);
      for (const u of created) {
        // as a user would: look at the new file in an editor and save it (it stays open)
        const d = await vscode.workspace.openTextDocument(u);
        await vscode.window.showTextDocument(d, { preview: false });
        await d.save();
      }
      res.mergeFiles = created.map((u) => path.relative(versionsDir, u.fsPath));
      res.mergeOnDisk = created.map((u) => fs.existsSync(u.fsPath) ? fs.readFileSync(u.fsPath, "utf8") : null);
    }
    step("merge");

    // 5. the extension's own commands
    await vscode.window.showTextDocument(doc);
    res.diagnosticsAfterMerge = await until(() => {
      const d = vscode.languages.getDiagnostics(uri).map((x) => String(x.code && x.code.value !== undefined ? x.code.value : x.code));
      return d.includes("G001") ? null : d;
    }, 15000);
    const merged = new Set(fs.readdirSync(versionsDir));
    await vscode.commands.executeCommand("migrationLsp.createNextRevision");
    const next = await until(() => fs.readdirSync(versionsDir).filter((f) => !merged.has(f)), 10000);
    res.createdNext = next || [];
    for (const f of res.createdNext) {
      const d = vscode.workspace.textDocuments.find((td) => td.uri.fsPath === path.join(versionsDir, f));
      if (d) {
        res.createdNextText = d.getText();
        await d.save();
      }
    }
    res.newFiles = fs.readdirSync(versionsDir).filter((f) => !before.has(f)).sort();
    step("createNext");

    // models: imported (M001 for Post.published_at) only in a trusted workspace, else M004 says why not
    const codeOf = (d) => String(d.code && d.code.value !== undefined ? d.code.value : d.code);
    await until(() => vscode.languages.getDiagnostics().some(([, ds]) => ds.some((d) => /^M/.test(codeOf(d)))), 15000);
    res.trusted = vscode.workspace.isTrusted;
    res.allDiagnostics = vscode.languages.getDiagnostics()
      .filter(([, ds]) => ds.length)
      .map(([u, ds]) => [path.relative(path.dirname(path.dirname(versionsDir)), u.fsPath),
        ds.map((d) => `${d.range.start.line + 1}: ${String(d.code && d.code.value !== undefined ? d.code.value : d.code)} ${d.message}`)]);
    // the graph: from the command palette command, and from the code lens on `revision =` (a server command)
    const graphTabs = () => vscode.window.tabGroups.all.flatMap((g) => g.tabs)
      .filter((t) => t.input instanceof vscode.TabInputWebview && /migrationLsp\.graph/.test(t.input.viewType)).length;
    await vscode.commands.executeCommand("migrationLsp.showRevisionGraph");
    res.graphTabsAfterCommand = await until(graphTabs, 5000);
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
    await until(() => graphTabs() === 0, 3000);
    const headDoc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(headDoc);
    const lenses = await vscode.commands.executeCommand("vscode.executeCodeLensProvider", uri) || [];
    res.codeLenses = lenses.map((l) => l.command && l.command.title);
    const lens = lenses.find((l) => l.command && l.command.command === "migrationLsp.showGraph");
    if (lens) await vscode.commands.executeCommand(lens.command.command, ...(lens.command.arguments || []));
    res.graphTabsAfterLens = await until(graphTabs, 5000);
    await handshake("graph");
    step("graph");

    // a rule setting restarts the server with it; clearing it again brings the rule back
    const mCodes = () => vscode.languages.getDiagnostics().flatMap(([, ds]) => ds.map(codeOf)).filter((c) => /^M/.test(c));
    const config = vscode.workspace.getConfiguration("migrationLsp");
    await config.update("ignore", ["M"], vscode.ConfigurationTarget.Global);
    res.modelCodesIgnored = await until(() => mCodes().length === 0 ? [] : null, 15000) || mCodes();
    await config.update("ignore", undefined, vscode.ConfigurationTarget.Global);
    res.modelCodesRestored = await until(() => mCodes().length ? mCodes() : null, 15000) || [];
    step("settings");

    // Restart server (or a new server command): features come back
    if (process.env.MIGRATION_LSP_E2E_RESTART_COMMAND) {
      // a new server command restarts the server with it
      await config.update("server.command", JSON.parse(process.env.MIGRATION_LSP_E2E_RESTART_COMMAND), vscode.ConfigurationTarget.Global);
    } else {
      await vscode.commands.executeCommand("migrationLsp.restartServer");
    }
    const again = await until(async () => {
      const h = await vscode.commands.executeCommand("vscode.executeHoverProvider", uri, hoverPos);
      return h && h.length ? h : null;
    }, 15000, 200) || [];
    res.hoverAfterRestart = again.map((h) => text(h.contents));
    await sleep(1500); // the status bar refreshes after the diagnostics settle
    step("restart");
  } catch (e) {
    if (!(e && e.expected)) res.error = String((e && e.stack) || e);
  }
  fs.writeFileSync(out + ".tmp", JSON.stringify(res, null, 2));
  fs.renameSync(out + ".tmp", out);
}

exports.activate = () => {
  if (process.env.MIGRATION_LSP_E2E_OUT) run();
};
exports.deactivate = () => {};
