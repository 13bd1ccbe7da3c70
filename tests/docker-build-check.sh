#!/usr/bin/env bash
# Runs the build stage of the Dockerfile without a container engine (none here): copies exactly
# what its COPY lines copy into a scratch context and runs its RUN lines there. A file the
# build needs but the Dockerfile forgets to COPY, or a lock file out of date for --locked,
# fails here as it would in `docker build`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# Keep the compiled dependencies between runs; the sources are the scratch copy's.
export CARGO_TARGET_DIR=$ROOT/target/docker-build-check

stage=0
while IFS= read -r line; do
  [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
  [[ $line == *\\ ]] && { echo "line continuations are not handled: $line" >&2; exit 1; }
  read -r instr args <<<"$line"
  case ${instr^^} in
  FROM)
    stage=$((stage + 1))
    ((stage == 1)) || break # only the build stage runs outside a container
    ;;
  WORKDIR) ;;             # the scratch dir stands for it
  COPY)
    read -ra parts <<<"$args"
    dst=${parts[-1]}
    for src in "${parts[@]:0:${#parts[@]}-1}"; do
      target=$WORK/${dst#./}
      if [[ $dst == */ ]]; then mkdir -p "$target"; target=$target$(basename "$src"); fi
      mkdir -p "$(dirname "$target")"
      cp -r "$ROOT/$src" "$target"
    done
    ;;
  RUN)
    echo "+ $args"
    (cd "$WORK" && bash -euo pipefail -c "$args")
    ;;
  *) echo "unhandled instruction in the build stage: $line" >&2; exit 1 ;;
  esac
done <"$ROOT/Dockerfile"
test -x "$CARGO_TARGET_DIR/release/panoptes"
"$CARGO_TARGET_DIR/release/panoptes" --version
echo "the Dockerfile's build stage works outside a container"
