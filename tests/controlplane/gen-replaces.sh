#!/usr/bin/env bash
# Generates the k8s.io staging `replace` block of go.mod mechanically:
# every k8s.io/* module that k8s.io/kubernetes@vX.Y.Z requires at the placeholder
# v0.0.0 is a staging module and is replaced with its v0.Y.Z release
# (plus the guard k8s.io/kubernetes => vX.Y.Z).
#   ./gen-replaces.sh           rewrite go.mod's replaces (then run go mod tidy)
#   ./gen-replaces.sh --check   exit 1 if go.mod's replaces differ from the generated set
# To bump Kubernetes: go mod edit -require=k8s.io/kubernetes@vNEW, then run this.
set -euo pipefail
cd "$(dirname "$0")"
export GOTOOLCHAIN=local GOFLAGS=-modcacherw

k8s=$(go mod edit -json | tr -d ' \t\n' | grep -o '"Path":"k8s.io/kubernetes","Version":"v[^"]*"' | head -1 | sed 's/.*"Version":"//; s/"$//')
[ -n "$k8s" ] || { echo "gen-replaces: k8s.io/kubernetes not required in go.mod" >&2; exit 1; }
staging_ver="v0.${k8s#v1.}"
kmod=$(go mod download -json "k8s.io/kubernetes@$k8s" | tr -d ' \t\n' | grep -o '"GoMod":"[^"]*"' | sed 's/"GoMod":"//; s/"$//')

# "M V" lines: k8s.io/* required at v0.0.0 by the upstream go.mod (block or single-line form).
want=$( { awk '{ if ($1 == "require") { $1 = ""; $0 = substr($0, 2) } }
               $1 ~ /^k8s\.io\// && $2 == "v0.0.0" { print $1 " " v }' v="$staging_ver" "$kmod"
          echo "k8s.io/kubernetes $k8s"; } | sort -u)
have=$(awk '{ if ($1 == "replace") { $1 = ""; $0 = substr($0, 2) } }
            $1 ~ /^k8s\.io\// && $2 == "=>" { print $1 " " $4 }' go.mod | sort -u)

if [ "${1:-}" = "--check" ]; then
  if [ "$want" != "$have" ]; then
    echo "gen-replaces: go.mod replace block is stale for k8s.io/kubernetes $k8s:" >&2
    diff <(echo "$have") <(echo "$want") >&2 || true
    echo "run tests/controlplane/gen-replaces.sh && go mod tidy" >&2
    exit 1
  fi
  echo "gen-replaces: $(echo "$want" | wc -l) k8s.io replaces match k8s.io/kubernetes $k8s"
  exit 0
fi

# Drop every existing k8s.io replace (single-line or in a block, and blocks left
# empty), then append one sorted block.
awk '/^replace k8s\.io\// { next }
     /^replace \($/ { blk = 1; buf = $0 "\n"; n = 0; next }
     blk && /^\)$/ { blk = 0; if (n) printf "%s)\n", buf; else skip = 1; next }
     blk { if ($1 !~ /^k8s\.io\//) { buf = buf $0 "\n"; n++ } next }
     skip && /^$/ { skip = 0; next }
     { skip = 0; print }' go.mod | cat -s >go.mod.new
{ echo "replace ("; while read -r m v; do printf '\t%s => %s %s\n' "$m" "$m" "$v"; done <<<"$want"; echo ")"; } >>go.mod.new
mv go.mod.new go.mod
go mod edit -fmt
echo "gen-replaces: wrote $(echo "$want" | wc -l) replaces for k8s.io/kubernetes $k8s; now run: go mod tidy"
