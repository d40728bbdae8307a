// The revision graph: parsed from the mermaid text the server returns for `migrationLsp.showGraph`
// (for the status bar), and rendered in a webview with a bundled copy of mermaid.
import * as crypto from "crypto";
import * as vscode from "vscode";

export interface Revision {
  id: string;
  message: string;
  head: boolean;
  base: boolean;
  merge: boolean;
}

export interface Environment {
  name: string;
  revisions: Map<string, Revision>;
  heads: Revision[];
}

/** Parse `migration-lsp graph --format mermaid` / the showGraph command's text. */
export function parseMermaid(text: string): Environment[] {
  const envs: Environment[] = [];
  let current: Environment | undefined;
  for (const line of text.split(/\r?\n/)) {
    const sub = /^\s*subgraph\s+\S+?\["(.*)"\]\s*$/.exec(line);
    if (sub) {
      current = { name: sub[1], revisions: new Map(), heads: [] };
      envs.push(current);
      continue;
    }
    if (/^\s*end\s*$/.test(line)) {
      current = undefined;
      continue;
    }
    const node = /^\s*r_(\S+?)\["(.*)"\]\s*$/.exec(line);
    if (node && current) {
      const id = node[1];
      let label = node[2];
      let marks: string[] = [];
      const m = /\s\(((?:head|base|merge)(?:, (?:head|base|merge))*)\)$/.exec(label);
      if (m) {
        marks = m[1].split(", ");
        label = label.slice(0, m.index);
      }
      const message = label.startsWith(id) ? label.slice(id.length).replace(/^:\s*/, "") : label;
      const rev: Revision = { id, message, head: marks.includes("head"), base: marks.includes("base"), merge: marks.includes("merge") };
      current.revisions.set(id, rev);
      if (rev.head) {
        current.heads.push(rev);
      }
    }
  }
  return envs;
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

  private constructor(private readonly extensionUri: vscode.Uri, private readonly refresh: () => Promise<string | undefined>) {
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

  static show(extensionUri: vscode.Uri, mermaidText: string, refresh: () => Promise<string | undefined>): void {
    if (!GraphPanel.current) {
      GraphPanel.current = new GraphPanel(extensionUri, refresh);
    } else {
      GraphPanel.current.panel.reveal(undefined, true);
    }
    GraphPanel.current.render(mermaidText);
  }

  private render(mermaidText: string): void {
    const webview = this.panel.webview;
    const nonce = crypto.randomBytes(16).toString("base64");
    const mermaidJs = webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, "dist", "mermaid.min.js"));
    const envs = parseMermaid(mermaidText);
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
