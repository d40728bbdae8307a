// The revision graph: the JSON the server returns for `migration-lsp/graph` (read by the status
// bar and the graph view's summary), and the view itself: the server's mermaid text
// (`migrationLsp.showGraph`) rendered in a webview with a bundled copy of mermaid.
import * as crypto from "crypto";
import * as vscode from "vscode";

/** What `migrationLsp.status` / `migration-lsp/graph` say of one environment's base branch. */
export interface BaseStatus {
  ref: string;
  ahead: number;
  behind: number;
}

/** One environment of the server's `migration-lsp/graph` answer (file URIs, 0-based lines). */
export interface GraphEnvironment {
  name: string;
  heads: string[];
  bases: string[];
  merge_points: string[];
  nodes: { id: string; message: string; path: string; line: number; down_revisions: string[] }[];
  base?: BaseStatus | null;
  note?: string;
}

export interface Revision {
  id: string;
  message: string;
  uri: vscode.Uri;
  line: number;
}

export interface Environment {
  name: string;
  revisions: Map<string, Revision>;
  heads: Revision[];
  files: Set<string>; // fsPath of every revision file
  base?: BaseStatus;
}

/** The server's graph answer as the extension uses it; anything malformed is left out. */
export function environmentsOf(data: unknown): Environment[] {
  const envs = (data as { environments?: unknown })?.environments;
  if (!Array.isArray(envs)) {
    return [];
  }
  const out: Environment[] = [];
  for (const raw of envs as GraphEnvironment[]) {
    if (!raw || typeof raw.name !== "string" || !Array.isArray(raw.nodes) || !Array.isArray(raw.heads)) {
      continue;
    }
    const revisions = new Map<string, Revision>();
    const files = new Set<string>();
    for (const node of raw.nodes) {
      if (!node || typeof node.id !== "string" || typeof node.path !== "string") {
        continue;
      }
      let uri: vscode.Uri;
      try {
        uri = vscode.Uri.parse(node.path, true);
      } catch {
        continue;
      }
      revisions.set(node.id, { id: node.id, message: String(node.message ?? ""), uri, line: Number(node.line) || 0 });
      files.add(uri.fsPath);
    }
    const heads = raw.heads.map((h) => revisions.get(h)).filter((r): r is Revision => r !== undefined);
    out.push({ name: raw.name, revisions, heads, files, base: raw.base ?? undefined });
  }
  return out;
}

/** The `revision = '...'` of a migration file's text, if it has one. */
export function revisionOf(text: string): string | undefined {
  const m = /^revision\s*(?::\s*[\w.\[\], |]+)?=\s*['"]([^'"]+)['"]/m.exec(text);
  return m ? m[1] : undefined;
}

function escapeHtml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

export class GraphPanel {
  private static current: GraphPanel | undefined;
  private readonly panel: vscode.WebviewPanel;

  private constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly refresh: () => Promise<string | undefined>,
    private readonly environments: () => Environment[],
  ) {
    this.panel = vscode.window.createWebviewPanel("migrationLsp.graph", "Revision graph", vscode.ViewColumn.Beside, {
      enableScripts: true,
      localResourceRoots: [vscode.Uri.joinPath(extensionUri, "dist")],
      retainContextWhenHidden: false,
    });
    this.panel.onDidDispose(() => {
      if (GraphPanel.current === this) {
        GraphPanel.current = undefined;
      }
    });
    this.panel.webview.onDidReceiveMessage(async (msg) => {
      if (msg?.type === "refresh") {
        const text = await this.refresh();
        if (text !== undefined) {
          this.render(text);
        }
      }
    });
  }

  static show(
    extensionUri: vscode.Uri,
    mermaidText: string,
    refresh: () => Promise<string | undefined>,
    environments: () => Environment[],
  ): void {
    if (!GraphPanel.current) {
      GraphPanel.current = new GraphPanel(extensionUri, refresh, environments);
    } else {
      GraphPanel.current.panel.reveal(undefined, true);
    }
    GraphPanel.current.render(mermaidText);
  }

  private render(mermaidText: string): void {
    const webview = this.panel.webview;
    const nonce = crypto.randomBytes(16).toString("base64");
    const mermaidJs = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "dist", "mermaid.min.js"));
    const envs = this.environments();
    const summary = envs
      .map((e) => `${escapeHtml(e.name)}: ${e.revisions.size} revisions, head${e.heads.length === 1 ? "" : "s"} ${e.heads.map((h) => `<code>${escapeHtml(h.id)}</code>`).join(", ") || "none"}`)
      .join("<br>");
    const source = escapeHtml(mermaidText || "flowchart BT\n  none[\"no Alembic environment found\"]");
    webview.html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src ${webview.cspSource} data:; style-src ${webview.cspSource} 'unsafe-inline'; font-src ${webview.cspSource} data:; script-src 'nonce-${nonce}';">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>Revision graph</title>
<style>
  body { font-family: var(--vscode-font-family); color: var(--vscode-foreground); padding: 0 1em; }
  header { display: flex; align-items: center; gap: 1em; }
  button { color: var(--vscode-button-foreground); background: var(--vscode-button-background); border: none; padding: 4px 10px; cursor: pointer; }
  button:hover { background: var(--vscode-button-hoverBackground); }
  #graph { overflow: auto; margin-top: 1em; }
  pre.source { font-family: var(--vscode-editor-font-family); font-size: var(--vscode-editor-font-size); white-space: pre; }
  .error { color: var(--vscode-errorForeground); }
</style>
</head>
<body>
<header><h2>Revision graph</h2><button id="refresh">Refresh</button></header>
<div>${summary}</div>
<div id="graph"><pre class="mermaid">${source}</pre></div>
<details><summary>Mermaid source</summary><pre class="source">${source}</pre></details>
<script nonce="${nonce}" src="${mermaidJs}"></script>
<script nonce="${nonce}">
  const vscodeApi = acquireVsCodeApi();
  document.getElementById("refresh").addEventListener("click", () => vscodeApi.postMessage({ type: "refresh" }));
  const dark = document.body.classList.contains("vscode-dark") || document.body.classList.contains("vscode-high-contrast");
  try {
    mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: dark ? "dark" : "default", flowchart: { useMaxWidth: true } });
    mermaid.run({ querySelector: "#graph .mermaid" }).then(
      () => document.body.setAttribute("data-rendered", "yes"),
      (e) => fail(e));
  } catch (e) { fail(e); }
  function fail(e) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = "Could not draw the graph (" + (e && e.message || e) + "); the mermaid source is below.";
    document.getElementById("graph").replaceChildren(p);
    document.querySelector("details").open = true;
  }
</script>
</body>
</html>`;
  }
}
