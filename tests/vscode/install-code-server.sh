#!/usr/bin/env bash
# Install code-server 4.100.3 (= VS Code 1.100.3; needs Node 20) from the npm registry into
# $1/node_modules (default .cache/code-server), without any download outside the registry:
# its postinstall would fetch ripgrep from GitHub, so we do its steps by hand and use Debian's rg.
# Needs Debian packages libkrb5-dev (kerberos.node wants gssapi.h) and ripgrep (`make vscode-deps`).
set -euo pipefail
VERSION=4.100.3
DEST=${1:-.cache/code-server}
command -v rg >/dev/null || { echo "install-code-server: ripgrep (rg) is missing" >&2; exit 1; }
node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
  { echo "install-code-server: code-server $VERSION needs Node.js 20 or newer (found $(node --version))" >&2; exit 1; }
mkdir -p "$DEST" && cd "$DEST"
DEST=$PWD
CS=$DEST/node_modules/code-server
if [ -x "$CS/out/node/entry.js" ] && "$CS/out/node/entry.js" --version 2>/dev/null | grep -q "^$VERSION"; then
  exit 0
fi
[ -f package.json ] || echo '{"name":"code-server-cache","private":true}' > package.json
export npm_config_yes=true npm_config_unsafe_perm=true npm_config_build_from_source=true
# 1. the outer package without its postinstall
npm install --no-audit --no-fund --ignore-scripts "code-server@$VERSION"
npm rebuild argon2                                  # built from source (the prebuilt download fails)
# 2. what postinstall.sh does, minus the GitHub download
cd "$CS/lib/vscode"
npm install --omit=dev --ignore-scripts --no-audit --no-fund
mkdir -p node_modules/@vscode/ripgrep/bin && cp "$(command -v rg)" node_modules/@vscode/ripgrep/bin/rg
npm rebuild                                         # node-gyp: node-pty, spdlog, kerberos, watchdog ...
ln -sfn node_modules node_modules.asar
(cd bin/remote-cli && ln -sfn code-linux.sh code-server)
(cd bin/helpers && ln -sfn browser-linux.sh browser.sh)
(cd extensions && npm install --omit=dev --no-audit --no-fund)
"$CS/out/node/entry.js" --version
