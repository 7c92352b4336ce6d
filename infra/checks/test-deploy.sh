#!/usr/bin/env bash
# Offline test of infra/docker/deploy.sh (what cloudbuild.yaml runs to deploy):
#   - every gcloud command it issues is parsed by the real Cloud SDK, with no
#     credentials: it must get as far as "no active account" (exit 1), never
#     an argument error (exit 2);
#   - the commands do what Orchard needs (image, one service account per
#     function, never public, FUNCTION_TARGET, the predictors following the
#     registry's production alias with no MODEL_URI pin unless one is given,
#     trigger filters, dead letters);
#   - the environment each function gets has the same keys as Terraform's
#     (infra/terraform/run.tf, local.function_env; MODEL_URI, which both
#     leave out unless a pin is given, only when one is).
# Lookups (describe) are answered by a fake, first as on a fresh project,
# then as on one where Terraform already created the triggers; then the two
# predictors are deployed again with a MODEL_URI pin.
#
# Usage: infra/checks/test-deploy.sh [DEPLOY_SCRIPT]
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
script="${1:-$repo/infra/docker/deploy.sh}"
real_gcloud="$(command -v gcloud)" || { echo "test-deploy: gcloud (Cloud SDK) is not installed" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/sdk"

cat >"$tmp/bin/gcloud" <<'FAKE'
#!/usr/bin/env bash
# Fake gcloud: answers lookups, records mutations after the real SDK parsed them.
set -uo pipefail
case "$*" in
  "eventarc triggers describe "*"--format=value(transport.pubsub.subscription)"*)
    echo "projects/p-test/subscriptions/eventarc-europe-west1-${4}-sub-123"; exit 0 ;;
  "eventarc triggers describe "*)
    [[ ${FAKE_TRIGGERS_EXIST:-0} == 1 ]] && { echo "$4"; exit 0; }
    echo "ERROR: NOT_FOUND" >&2; exit 1 ;;
  "pubsub topics describe "*)
    echo "$4"; exit 0 ;;
esac
printf '%s\n' "$*" >>"$FAKE_LOG"
# Parse with the real SDK; without credentials it stops before any request.
out="$(CLOUDSDK_CONFIG="$FAKE_SDK_CONFIG" CLOUDSDK_CORE_DISABLE_PROMPTS=1 \
  CLOUDSDK_CORE_CHECK_GCE_METADATA=false "$REAL_GCLOUD" "$@" 2>&1)"
rc=$?
if [[ $rc -eq 1 && $out == *"do not currently have an active account"* ]]; then
  exit 0
fi
echo "test-deploy: gcloud rejected: gcloud $*" >&2
echo "$out" >&2
exit 1
FAKE
chmod +x "$tmp/bin/gcloud"

export PATH="$tmp/bin:$PATH" REAL_GCLOUD="$real_gcloud" FAKE_SDK_CONFIG="$tmp/sdk"
# deploy.sh's optional inputs take their defaults here, whatever the caller's
# shell exports (e.g. MODEL_URI for a local run of the functions).
unset PREFIX BUCKET_PREFIX MODEL_NAME MODEL_ALIAS MODEL_URI EVAL_URI TRAINING_OVERRIDE_LIMITS VERTEX_REGION \
  TRAINER_MACHINE_TYPE MAX_DELIVERY_ATTEMPTS UPLOAD_PREFIXES MONITOR_INTERVAL_MINUTES
export PROJECT_ID=p-test REGION=europe-west1 \
  FUNCTIONS_IMAGE=europe-west1-docker.pkg.dev/p-test/orchard/functions:b1 \
  TRAINER_IMAGE=europe-west1-docker.pkg.dev/p-test/orchard/trainer:b1

fail=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "  ok   $1"; else echo "  FAIL $1" >&2; fail=1; fi
}

for round in fresh existing; do
  export FAKE_LOG="$tmp/$round.log"
  : >"$FAKE_LOG"
  FAKE_TRIGGERS_EXIST=0
  [[ $round == existing ]] && FAKE_TRIGGERS_EXIST=1
  export FAKE_TRIGGERS_EXIST
  echo "test-deploy: $round project"
  "$script" all || { echo "test-deploy: deploy.sh all failed" >&2; exit 1; }
done
pin=gs://p-test-orchard-models/models/fruits/versions/v3
export FAKE_LOG="$tmp/pinned.log"
: >"$FAKE_LOG"
echo "test-deploy: predictors pinned to $pin"
for fn in predict predict-on-upload; do
  MODEL_URI=$pin "$script" "$fn" || { echo "test-deploy: MODEL_URI=$pin deploy.sh $fn failed" >&2; exit 1; }
done

log="$tmp/fresh.log"
line() { grep -E -- "$1" "$log"; }
has() { grep -qE -- "$1" "$log"; }
lacks() { ! grep -qE -- "$1" <<<"$2"; } # lacks PATTERN TEXT
for fn in predict:predict:Predict predict-on-upload:upload:PredictOnUpload submit-training:submit:SubmitTraining monitor:monitor:Monitor; do
  IFS=: read -r svc account target <<<"$fn"
  cmd="$(line "^run deploy orchard-$svc ")" || { echo "  FAIL no deploy of $svc" >&2; fail=1; continue; }
  check "$svc: deployed from the functions image" grep -q -- "--image=$FUNCTIONS_IMAGE" <<<"$cmd"
  check "$svc: runs as its own service account" grep -q -- "--service-account=orchard-$account@p-test.iam.gserviceaccount.com" <<<"$cmd"
  check "$svc: not public" grep -q -- "--no-allow-unauthenticated" <<<"$cmd"
  check "$svc: FUNCTION_TARGET=$target" grep -qE -- "[|^]FUNCTION_TARGET=$target([| ]|$)" <<<"$cmd"
done
for svc in predict predict-on-upload; do
  cmd="$(line "^run deploy orchard-$svc ")" || continue
  for kv in REGISTRY_URI=gs://p-test-orchard-models MODEL_NAME=fruits MODEL_ALIAS=production; do
    check "$svc: $kv (follows the registry alias)" grep -qE -- "[|^]$kv([| ]|$)" <<<"$cmd"
  done
  check "$svc: no MODEL_URI pin by default" lacks "[|^]MODEL_URI=" "$cmd"
  check "$svc: MODEL_URI pins when given" grep -qE -- "^run deploy orchard-$svc .*[|]MODEL_URI=${pin}[| ]" "$tmp/pinned.log"
done
check "submit-training: MODEL_PUBLISHED_TOPIC for the jobs" has \
  "^run deploy orchard-submit-training .*[|]MODEL_PUBLISHED_TOPIC=projects/p-test/topics/orchard-model-published([| ]|$)"
check "event-driven functions take internal traffic only" \
  bash -c "[[ \$(grep -cE -- '^run deploy orchard-(predict-on-upload|submit-training|monitor) .*--ingress=internal ' '$log') == 3 ]]"
check "monitor: one window at a time, as long as Terraform's default tick" has \
  "^run deploy orchard-monitor .*--concurrency=1 .*--max-instances=1 .*[|]MONITOR_WINDOW=60m([| ]|$)"
check "upload trigger: finalize on the uploads bucket, as its identity" has \
  "^eventarc triggers create orchard-predict-on-upload .*--destination-run-service=orchard-predict-on-upload .*--service-account=orchard-upload-trigger@.*type=google.cloud.storage.object.v1.finalized.*bucket=p-test-orchard-uploads"
check "training trigger: messages on the training-requests topic" has \
  "^eventarc triggers create orchard-submit-training .*--service-account=orchard-train-trigger@.*type=google.cloud.pubsub.topic.v1.messagePublished.*--transport-topic=projects/p-test/topics/orchard-training-requests"
check "monitor trigger: ticks on the monitor-tick topic, as its identity" has \
  "^eventarc triggers create orchard-monitor .*--destination-run-service=orchard-monitor .*--service-account=orchard-monitor-trigger@.*type=google.cloud.pubsub.topic.v1.messagePublished.*--transport-topic=projects/p-test/topics/orchard-monitor-tick"
check "dead-letter topics attached to both Eventarc subscriptions" \
  bash -c "[[ \$(grep -cE -- '^pubsub subscriptions update .*--dead-letter-topic=projects/p-test/topics/orchard-(upload-events|training-requests)-dead-letter --max-delivery-attempts=5' '$log') == 2 ]]"
check "existing triggers are updated, not recreated" \
  bash -c "! grep -q 'triggers create' '$tmp/existing.log' && [[ \$(grep -c 'triggers update' '$tmp/existing.log') == 3 ]]"

# The batch job: the functions image's batch binary, its own account, and
# the environment keys of Terraform's local.batch_env (batch.tf).
cmd="$(line "^run jobs deploy orchard-batch ")" || { echo "  FAIL no deploy of the batch job" >&2; fail=1; }
check "batch: deployed from the functions image" grep -q -- "--image=$FUNCTIONS_IMAGE --command=/usr/local/bin/batch" <<<"$cmd"
check "batch: runs as its own service account" grep -q -- "--service-account=orchard-batch@p-test.iam.gserviceaccount.com" <<<"$cmd"
python3 - "$repo/infra/terraform/batch.tf" "$cmd" <<'PY' || fail=1
import re, sys
tf = open(sys.argv[1]).read()
block = tf[tf.index("batch_env = {"):]
want = set(re.findall(r"^\s+([A-Z][A-Z0-9_]*)\s+=", block[: block.index("\n  }")], re.M)) | {"GOOGLE_CLOUD_PROJECT"}
m = re.search(r"--set-env-vars=\^\|\^(.*?) --quiet$", sys.argv[2])
got = {kv.split("=", 1)[0] for kv in m.group(1).split("|")} if m else set()
if got != want:
    print(f"  FAIL batch: environment differs from Terraform's: only in Terraform {sorted(want - got)}, only in deploy.sh {sorted(got - want)}", file=sys.stderr)
    sys.exit(1)
print(f"  ok   batch: same environment keys as Terraform ({len(got)})")
PY

# The environment keys must match Terraform's local.function_env (plus
# GOOGLE_CLOUD_PROJECT, which Terraform adds to every service). MODEL_URI is
# left out by both unless a pin is given: optional in the default round,
# required in the pinned one (which deploys only the two predictors).
python3 - "$repo/infra/terraform/run.tf" "$log" "$tmp/pinned.log" <<'PY' || fail=1
import re, sys
OPTIONAL = {"MODEL_URI", "EVAL_URI", "TRAINING_OVERRIDE_LIMITS"}
tf = open(sys.argv[1]).read()
block = tf[tf.index("function_env = {"):]
want = {}
for name, body in re.findall(r"\n    (\w+) = \{\n(.*?)\n    \}", block[: block.index("\n  }\n")], re.S):
    want[name.replace("_", "-")] = {m for m in re.findall(r"^\s+([A-Z][A-Z0-9_]*)\s+=", body, re.M)} | {"GOOGLE_CLOUD_PROJECT"}
def deployed(path):
    got = {}
    for line in open(path):
        m = re.match(r"run deploy orchard-(\S+) .*--set-env-vars=\^\|\^(.*?) --quiet$", line.strip())
        if m:
            got[m.group(1)] = {kv.split("=", 1)[0] for kv in m.group(2).split("|")}
    return got
bad = False
for path, optional, every in ((sys.argv[2], OPTIONAL, True), (sys.argv[3], set(), False)):
    got = deployed(path)
    label = "" if every else " (MODEL_URI pinned)"
    for fn in sorted((set(want) if every else set()) | set(got)):
        w, g = want.get(fn, set()), got.get(fn, set())
        missing, extra = w - g - optional, g - w
        if fn not in got or fn not in want or missing or extra:
            bad = True
            print(f"  FAIL {fn}{label}: environment differs from Terraform's: only in Terraform {sorted(w - g)}, only in deploy.sh {sorted(extra)}", file=sys.stderr)
        else:
            print(f"  ok   {fn}{label}: same environment keys as Terraform ({len(g)} of {len(w)})")
sys.exit(1 if bad else 0)
PY

if ((fail)); then
  echo "test-deploy: FAILED" >&2
  exit 1
fi
echo "test-deploy: ok ($(wc -l <"$tmp/fresh.log") + $(wc -l <"$tmp/existing.log") + $(wc -l <"$tmp/pinned.log") gcloud commands parsed by the Cloud SDK)"
