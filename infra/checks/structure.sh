#!/usr/bin/env bash
# Orchard's structure checks, all part of `make lint`: light packages stay
# apart from heavy runtimes (1-5: `make structure`, seconds warm), and the
# tree has no unreachable code and no staticcheck findings (6: `make
# staticcheck`; about 3 min of CPU warm on 2 cores, since staticcheck
# analyses every dependency, and more on the first run).
#
#   1. CGO_ENABLED=0 builds the orchard CLI, and that binary refuses to
#      promote (the gate cannot reproduce verification logits without
#      onnxruntime) with an error naming the cgo build; and a cgo-free
#      shared/preprocess refuses JPEGs (no libjpeg-turbo) rather than
#      decoding them differently from serving.
#   2. The trainer's publish path (shared/registry: Publish, the gate,
#      the store) builds without cgo and does not depend on onnxruntime_go:
#      the runtime is injected (registry.Runtime).
#   3. No package under shared/ imports trainer/ or functions/, in its code
#      or its tests (transitively for the code, directly for the tests).
#   4. The production functions binary does not link package testing.
#   5. The result schema (shared/results) depends on no package with cgo
#      files, even with CGO_ENABLED=1: its readers link no decoder.
#   6. staticcheck (pinned) and deadcode -test (pinned) report nothing.
#
# The pinned tools run with `go run pkg@version`: they come from the module
# proxy into the Go module and build caches, outside the checkout.
#
# Usage: infra/checks/structure.sh [structure|tools|all] (default all)
set -euo pipefail
cd "$(dirname "$0")/../.."

STATICCHECK=honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEADCODE=golang.org/x/tools/cmd/deadcode@v0.52.0
MOD=$(go list -m)
fail=0
bad() { echo "structure: $*" >&2; fail=1; }

structure() {
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN

	# 1. The CLI without cgo, and its refusal to promote.
	CGO_ENABLED=0 go build -o "$tmp/orchard" ./infra/cmd/orchard
	local out
	if out=$("$tmp/orchard" promote -registry "file://$tmp/registry" -name colours -version v1 -by structure.sh 2>&1); then
		bad "the CGO_ENABLED=0 orchard CLI promoted without onnxruntime"
	elif ! grep -q 'CGO_ENABLED=1' <<<"$out"; then
		bad "the CGO_ENABLED=0 orchard CLI's promote error does not name the cgo build: $out"
	fi
	CGO_ENABLED=0 go test -count=1 -run '^TestNoCgo' ./shared/preprocess >/dev/null ||
		bad "a CGO_ENABLED=0 shared/preprocess does not refuse JPEGs (CGO_ENABLED=0 go test -run NoCgo ./shared/preprocess)"

	# 2. The trainer's publish path without onnxruntime.
	CGO_ENABLED=0 go build ./shared/registry
	if go list -deps ./shared/registry | grep -qx 'github.com/yalue/onnxruntime_go'; then
		bad "shared/registry (the trainer's publish path) depends on onnxruntime_go"
	fi

	# 3. shared/ never imports trainer/ or functions/.
	local p
	while read -r p; do
		bad "$p"
	done < <(go list -f '{{$p := .ImportPath}}{{range .Deps}}{{$p}} depends on {{.}}{{"\n"}}{{end}}{{range .TestImports}}{{$p}} test imports {{.}}{{"\n"}}{{end}}{{range .XTestImports}}{{$p}} test imports {{.}}{{"\n"}}{{end}}' ./shared/... |
		grep -E " ($MOD/trainer|$MOD/functions)(/|\$)" || true)

	# 4. No testing in the production functions binary.
	if go list -deps ./functions/cmd/functions | grep -qx testing; then
		bad "package testing is linked into ./functions/cmd/functions (imported by: $(go list -f '{{.ImportPath}} {{join .Imports " "}}' $(go list -deps ./functions/cmd/functions) | awk '/ testing( |$)/{print $1}' | tr '\n' ' '))"
	fi

	# 5. The result schema is cgo-free: readers of results link no decoder.
	local cgo
	cgo=$(CGO_ENABLED=1 go list -deps -f '{{if .CgoFiles}}{{.ImportPath}}{{end}}' ./shared/results | tr '\n' ' ')
	if [[ -n "${cgo// /}" ]]; then
		bad "shared/results depends on packages with cgo files: $cgo"
	fi
}

tools() {
	go run "$STATICCHECK" ./... || bad "staticcheck reported problems"
	local dead
	dead=$(go run "$DEADCODE" -test ./...)
	if [[ -n "$dead" ]]; then
		bad "unreachable functions (deadcode -test):"$'\n'"$dead"
	fi
}

case "${1:-all}" in
structure) structure ;;
tools) tools ;;
all) structure; tools ;;
*) echo "usage: $0 [structure|tools|all]" >&2; exit 2 ;;
esac
exit "$fail"
