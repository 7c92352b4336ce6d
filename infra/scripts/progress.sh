#!/usr/bin/env bash
# Runs a `go build -v` / `go install -v` command and shows that it is alive:
# go prints a package name as it compiles it, and nothing while it links or
# compiles one large package, so a cold build can be silent for minutes.
# This prints what is being done and how long a first run takes, then, on a
# terminal, one line rewritten in place (packages compiled, elapsed time);
# otherwise a plain line every 10 s. The command's exit status is kept, and
# on failure its last output lines are shown.
#
# Usage: progress.sh "WHAT" "FIRST-RUN ESTIMATE" COMMAND [ARGS...]
#   e.g. progress.sh "building the demo" "about 3-4 min on 2 cores" go build -v -o .cache/bin/ ./cmd/...
set -uo pipefail

what=${1:?usage: progress.sh WHAT ESTIMATE COMMAND...}
estimate=${2:?usage: progress.sh WHAT ESTIMATE COMMAND...}
shift 2
[[ $# -gt 0 ]] || { echo "progress.sh: no command" >&2; exit 2; }

tty=false
[[ -t 1 ]] && tty=true
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "==> $what (first run on a cold Go build cache: $estimate; later runs: seconds)"
start=$SECONDS
"$@" >"$log" 2>&1 &
pid=$!
# Stop the command with us (Ctrl-C, make interrupted).
trap 'kill "$pid" 2>/dev/null; rm -f "$log"; exit 130' INT TERM

last=$start
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  n=$(grep -cv '^#' "$log" || true)
  now=$SECONDS
  if [[ $tty == true ]]; then
    printf '\r    %d packages compiled, %d s ' "$n" "$((now - start))"
  elif ((now - last >= 10)); then
    echo "    ... still working: $n packages compiled, $((now - start)) s"
    last=$now
  fi
done
wait "$pid"
rc=$?
[[ $tty == true ]] && printf '\r\033[K'
n=$(grep -cv '^#' "$log" || true)
if ((rc != 0)); then
  echo "    FAILED after $((SECONDS - start)) s (exit $rc); last output:" >&2
  tail -n 30 "$log" >&2
  exit "$rc"
fi
echo "    done in $((SECONDS - start)) s ($n packages compiled)"
