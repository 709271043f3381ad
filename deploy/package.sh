#!/usr/bin/env bash
# Builds the code directory the SAM template deploys (.build/control-api): dist/, production
# node_modules compiled for Lambda (better-sqlite3 is native), run.sh and fetch-secrets.cjs.
# Usage: deploy/package.sh [x86_64|arm64]   (needs Docker for the native build)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
out="$root/.build/control-api"
case "${1:-x86_64}" in
  x86_64) platform=linux/amd64 ;;
  arm64) platform=linux/arm64 ;;
  *) echo "usage: $0 [x86_64|arm64]" >&2; exit 2 ;;
esac

(cd "$root" && npm run build)
rm -rf "$out"
mkdir -p "$out"
cp -R "$root/dist" "$out/dist"
cp "$root/package-lock.json" "$out/"
# Without scripts: `npm ci` would otherwise run the repository's build (prepare) in the package.
node -e 'const p = require(process.argv[1]); delete p.scripts; delete p.devDependencies;
  process.stdout.write(JSON.stringify(p, null, 2));' "$root/package.json" > "$out/package.json"
cp "$here/run.sh" "$here/fetch-secrets.cjs" "$out/"
chmod 755 "$out/run.sh"
docker run --rm --platform "$platform" -v "$out:/var/task" -w /var/task \
  public.ecr.aws/sam/build-nodejs20.x:latest npm ci --omit=dev
echo "built $out; now: sam deploy --guided -t deploy/control-api.sam.yaml"
