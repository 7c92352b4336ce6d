#!/usr/bin/env bash
# Deploys Orchard's Cloud Run functions from the functions image, and their
# Eventarc triggers. Run by cloudbuild.yaml (`deploy.sh all`); also usable by
# hand with gcloud authenticated.
#
# Cloud Run functions built into a container image are deployed as Cloud Run
# services (`gcloud run deploy --image`); `gcloud functions deploy` only takes
# source. Event triggers for such services are Eventarc triggers.
#
# Usage: infra/docker/deploy.sh predict|predict-on-upload|submit-training|monitor|batch|triggers|all
#   all: the four functions and the batch job in parallel, then the triggers (cloudbuild.yaml)
#   batch: the batch prediction Cloud Run job (infra/terraform/batch.tf), same image
#
# Environment (cloudbuild.yaml maps its substitutions onto these):
#   PROJECT_ID        project (required)
#   REGION            region of the services, triggers and buckets (required)
#   PREFIX            name prefix, as Terraform's name_prefix (default orchard)
#   BUCKET_PREFIX     bucket name prefix (default $PROJECT_ID-$PREFIX)
#   FUNCTIONS_IMAGE   image to deploy (required for the functions)
#   TRAINER_IMAGE     image Vertex AI jobs run (required for submit-training)
#   MODEL_NAME        registry model Predict and PredictOnUpload serve (default fruits)
#   MODEL_ALIAS       its alias they serve and follow, reloading when it moves (default production)
#   MODEL_URI         optional pin: a fixed model directory served instead of the alias
#                     (default empty: not set, the functions follow MODEL_ALIAS)
#   VERTEX_REGION     Vertex AI region (default $REGION)
#   TRAINER_MACHINE_TYPE    (default n2-standard-8)
#   MAX_DELIVERY_ATTEMPTS   before dead-lettering (default 5)
#   UPLOAD_PREFIXES   comma-separated object prefixes PredictOnUpload handles (default all)
#   EVAL_URI          the quality gate's evaluation set (optional)
#   TRAINING_OVERRIDE_LIMITS  bounds on training request overrides (optional)
#   MONITOR_INTERVAL_MINUTES  the drift monitor's tick interval and window, as
#                     Terraform's monitor_interval_minutes (default 60)
#
# The names, service accounts and environment match infra/terraform (which
# creates the service accounts, buckets, topics and IAM this relies on);
# infra/checks/test-deploy.sh runs this script against a fake gcloud and
# compares the environment with Terraform's.
set -euo pipefail

: "${PROJECT_ID:?PROJECT_ID is required}"
: "${REGION:?REGION is required}"
PREFIX="${PREFIX:-orchard}"
BUCKET_PREFIX="${BUCKET_PREFIX:-$PROJECT_ID-$PREFIX}"
MODEL_NAME="${MODEL_NAME:-fruits}"
MODEL_ALIAS="${MODEL_ALIAS:-production}"
MODEL_URI="${MODEL_URI:-}"
VERTEX_REGION="${VERTEX_REGION:-$REGION}"
TRAINER_MACHINE_TYPE="${TRAINER_MACHINE_TYPE:-n2-standard-8}"
MAX_DELIVERY_ATTEMPTS="${MAX_DELIVERY_ATTEMPTS:-5}"
UPLOAD_PREFIXES="${UPLOAD_PREFIXES:-}"
EVAL_URI="${EVAL_URI:-}"                                 # the quality gate's evaluation set (optional)
TRAINING_OVERRIDE_LIMITS="${TRAINING_OVERRIDE_LIMITS:-}" # bounds on request overrides (optional)
MONITOR_INTERVAL_MINUTES="${MONITOR_INTERVAL_MINUTES:-60}"

sa() { echo "$PREFIX-$1@$PROJECT_ID.iam.gserviceaccount.com"; }
topic() { echo "projects/$PROJECT_ID/topics/$PREFIX-$1"; }
registry="gs://$BUCKET_PREFIX-models"

# The served model: the registry alias, followed (hot reload on promotion),
# unless MODEL_URI pins a fixed model. MODEL_URI is left out when empty, as
# Terraform leaves it out when model_uri is null, so the two agree.
model_env=("REGISTRY_URI=$registry" "MODEL_NAME=$MODEL_NAME" "MODEL_ALIAS=$MODEL_ALIAS")
if [[ -n $MODEL_URI ]]; then
  model_env+=("MODEL_URI=$MODEL_URI")
fi

# env KEY=VALUE...: one --set-env-vars argument. Values may contain commas,
# so use gcloud's alternate delimiter syntax (^|^).
env_flag() {
  local IFS='|'
  echo "--set-env-vars=^|^$*"
}

# deploy SERVICE SA INGRESS MEMORY CONCURRENCY MAX_INSTANCES TIMEOUT ENV...
deploy() {
  local service=$1 account=$2 ingress=$3 memory=$4 concurrency=$5 max=$6 timeout=$7
  shift 7
  : "${FUNCTIONS_IMAGE:?FUNCTIONS_IMAGE is required}"
  gcloud run deploy "$PREFIX-$service" \
    --project="$PROJECT_ID" --region="$REGION" \
    --image="$FUNCTIONS_IMAGE" \
    --service-account="$(sa "$account")" \
    --no-allow-unauthenticated \
    --ingress="$ingress" \
    --execution-environment=gen2 \
    --cpu=1 --memory="$memory" --cpu-boost \
    --concurrency="$concurrency" --min-instances=0 --max-instances="$max" \
    --timeout="$timeout" \
    --port=8080 \
    --labels="app=orchard,function=$service" \
    "$(env_flag "GOOGLE_CLOUD_PROJECT=$PROJECT_ID" "$@")" \
    --quiet
}

# ensure_trigger NAME LOCATION SERVICE IDENTITY FLAGS...: create the trigger,
# or point an existing one (e.g. Terraform's) at the service and identity.
ensure_trigger() {
  local name=$1 location=$2 service=$3 identity=$4
  shift 4
  local common=(--project="$PROJECT_ID" --location="$location")
  local dest=(--destination-run-service="$service" --destination-run-region="$REGION" --service-account="$identity")
  if gcloud eventarc triggers describe "$name" "${common[@]}" --format='value(name)' >/dev/null 2>&1; then
    gcloud eventarc triggers update "$name" "${common[@]}" "${dest[@]}" --quiet
  else
    gcloud eventarc triggers create "$name" "${common[@]}" "${dest[@]}" "$@" --quiet
  fi
}

# dead_letter TRIGGER LOCATION DEAD_LETTER_TOPIC: Eventarc creates the
# subscription behind a trigger; its dead-letter policy is set on it afterwards.
dead_letter() {
  local name=$1 location=$2 dlq=$3 sub
  if ! gcloud pubsub topics describe "$dlq" --project="$PROJECT_ID" --format='value(name)' >/dev/null 2>&1; then
    echo "deploy: dead-letter topic $dlq does not exist (apply infra/terraform); $name keeps Eventarc's default retries" >&2
    return 0
  fi
  sub="$(gcloud eventarc triggers describe "$name" --project="$PROJECT_ID" --location="$location" \
    --format='value(transport.pubsub.subscription)')"
  [[ -n $sub ]] || { echo "deploy: trigger $name has no Pub/Sub subscription yet" >&2; return 1; }
  gcloud pubsub subscriptions update "$sub" --project="$PROJECT_ID" \
    --dead-letter-topic="$dlq" --max-delivery-attempts="$MAX_DELIVERY_ATTEMPTS" \
    --min-retry-delay=10s --max-retry-delay=600s --quiet
}

case "${1:-}" in
  predict)
    deploy predict predict all 2Gi 8 10 300s \
      FUNCTION_TARGET=Predict \
      "${model_env[@]}" \
      INTRA_OP_THREADS=1 \
      "PREDICT_ALLOWED_BUCKETS=$BUCKET_PREFIX-uploads,$BUCKET_PREFIX-datasets"
    ;;
  predict-on-upload)
    deploy predict-on-upload upload internal 2Gi 8 10 300s \
      FUNCTION_TARGET=PredictOnUpload \
      "${model_env[@]}" \
      INTRA_OP_THREADS=1 \
      "UPLOAD_BUCKET=$BUCKET_PREFIX-uploads" \
      "RESULTS_BUCKET=$BUCKET_PREFIX-results" \
      "PREDICTIONS_TOPIC=$(topic predictions)" \
      "UPLOAD_PREFIXES=$UPLOAD_PREFIXES"
    ;;
  submit-training)
    : "${TRAINER_IMAGE:?TRAINER_IMAGE is required}"
    # Left out when empty, as Terraform leaves out its null values.
    gate_env=()
    [[ -z $EVAL_URI ]] || gate_env+=("EVAL_URI=$EVAL_URI")
    [[ -z $TRAINING_OVERRIDE_LIMITS ]] || gate_env+=("TRAINING_OVERRIDE_LIMITS=$TRAINING_OVERRIDE_LIMITS")
    deploy submit-training submit internal 512Mi 16 2 60s \
      FUNCTION_TARGET=SubmitTraining \
      "VERTEX_REGION=$VERTEX_REGION" \
      "TRAINER_IMAGE=$TRAINER_IMAGE" \
      "TRAINER_MACHINE_TYPE=$TRAINER_MACHINE_TYPE" \
      "TRAINER_SERVICE_ACCOUNT=$(sa trainer)" \
      "TRAINING_OUTPUT_URI=$registry/training-runs" \
      "REGISTRY_URI=$registry" \
      "MODEL_PUBLISHED_TOPIC=$(topic model-published)" \
      "${gate_env[@]}"
    ;;
  monitor)
    # One window at a time: Terraform's scheduler ticks every
    # MONITOR_INTERVAL_MINUTES, and each run covers that long.
    deploy monitor monitor internal 1Gi 1 1 300s \
      FUNCTION_TARGET=Monitor \
      "REGISTRY_URI=$registry" \
      "RESULTS_BUCKET=$BUCKET_PREFIX-results" \
      "MONITOR_WINDOW=${MONITOR_INTERVAL_MINUTES}m"
    ;;
  batch)
    # The batch prediction job: the functions image's second binary. Task
    # count and the like are Terraform's defaults (var.batch); orchard
    # batch sets BATCH_PREFIX, MODEL_VERSION and -tasks per run.
    : "${FUNCTIONS_IMAGE:?FUNCTIONS_IMAGE is required}"
    gcloud run jobs deploy "$PREFIX-batch" \
      --project="$PROJECT_ID" --region="$REGION" \
      --image="$FUNCTIONS_IMAGE" --command=/usr/local/bin/batch \
      --service-account="$(sa batch)" \
      --tasks=10 --max-retries=3 --task-timeout=3600s \
      --cpu=2 --memory=2Gi \
      --labels="app=orchard,function=batch" \
      "$(env_flag "GOOGLE_CLOUD_PROJECT=$PROJECT_ID" "RESULTS_BUCKET=$BUCKET_PREFIX-results" \
        "REGISTRY_URI=$registry" "MODEL_NAME=$MODEL_NAME" INTRA_OP_THREADS=1)" \
      --quiet
    ;;
  triggers)
    # Direct Cloud Storage events: the trigger lives in the bucket's location.
    ensure_trigger "$PREFIX-predict-on-upload" "$REGION" "$PREFIX-predict-on-upload" "$(sa upload-trigger)" \
      --event-filters=type=google.cloud.storage.object.v1.finalized \
      --event-filters="bucket=$BUCKET_PREFIX-uploads"
    ensure_trigger "$PREFIX-submit-training" "$REGION" "$PREFIX-submit-training" "$(sa train-trigger)" \
      --event-filters=type=google.cloud.pubsub.topic.v1.messagePublished \
      --transport-topic="$(topic training-requests)"
    ensure_trigger "$PREFIX-monitor" "$REGION" "$PREFIX-monitor" "$(sa monitor-trigger)" \
      --event-filters=type=google.cloud.pubsub.topic.v1.messagePublished \
      --transport-topic="$(topic monitor-tick)"
    dead_letter "$PREFIX-predict-on-upload" "$REGION" "$(topic upload-events-dead-letter)"
    dead_letter "$PREFIX-submit-training" "$REGION" "$(topic training-requests-dead-letter)"
    ;;
  all)
    pids=()
    for fn in predict predict-on-upload submit-training monitor batch; do
      "$0" "$fn" &
      pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do
      wait "$pid" || failed=1
    done
    ((failed == 0)) || { echo "deploy: a function failed to deploy; triggers left as they were" >&2; exit 1; }
    "$0" triggers
    ;;
  *)
    echo "usage: $0 predict|predict-on-upload|submit-training|monitor|batch|triggers|all" >&2
    exit 2
    ;;
esac
