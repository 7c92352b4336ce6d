# One service account per workload, each with only what it needs. No
# primitive roles (owner/editor/viewer) anywhere; bucket and topic roles are
# granted on the bucket or topic, not the project, wherever IAM allows.

locals {
  service_accounts = {
    predict = {
      id   = "${var.name_prefix}-predict"
      name = "Orchard Predict (HTTP function)"
    }
    predict_on_upload = {
      id   = "${var.name_prefix}-upload"
      name = "Orchard PredictOnUpload (GCS-triggered function)"
    }
    submit_training = {
      id   = "${var.name_prefix}-submit"
      name = "Orchard SubmitTraining (Pub/Sub-triggered function)"
    }
    trainer = {
      id   = "${var.name_prefix}-trainer"
      name = "Orchard training jobs (Vertex AI custom jobs run as this)"
    }
    upload_trigger = {
      id   = "${var.name_prefix}-upload-trigger"
      name = "Orchard Eventarc trigger identity: uploads -> PredictOnUpload"
    }
    training_trigger = {
      id   = "${var.name_prefix}-train-trigger"
      name = "Orchard Eventarc trigger identity: training topic -> SubmitTraining"
    }
    monitor = {
      id   = "${var.name_prefix}-monitor"
      name = "Orchard Monitor (drift monitor, Pub/Sub-triggered function)"
    }
    monitor_trigger = {
      id   = "${var.name_prefix}-monitor-trigger"
      name = "Orchard Eventarc trigger identity: monitor-tick topic -> Monitor"
    }
    batch = {
      id   = "${var.name_prefix}-batch"
      name = "Orchard batch prediction job (batch.tf)"
    }
  }

  # Bucket-level grants: [service account key, bucket key, role]. What each
  # account's code does with storage is tabled in storage_calls.csv (kept
  # true by Go tests that record the calls); the precondition on
  # google_storage_bucket_iam_member.grants fails the plan when a call is
  # not covered by these grants.
  bucket_grants = [
    # Predict reads the served model, and gs:// images named in JSON requests
    # from the uploads and datasets buckets (PREDICT_ALLOWED_BUCKETS).
    ["predict", "models", "roles/storage.objectViewer"],
    ["predict", "uploads", "roles/storage.objectViewer"],
    ["predict", "datasets", "roles/storage.objectViewer"],
    # PredictOnUpload reads uploads and the model, and writes results: a
    # re-uploaded name replaces its result, and replacing an object needs
    # storage.objects.delete as well as create (objectCreator cannot), so
    # objectUser.
    ["predict_on_upload", "models", "roles/storage.objectViewer"],
    ["predict_on_upload", "uploads", "roles/storage.objectViewer"],
    ["predict_on_upload", "results", "roles/storage.objectUser"],
    # SubmitTraining checks the dataset and the registry before creating a job.
    ["submit_training", "datasets", "roles/storage.objectViewer"],
    ["submit_training", "models", "roles/storage.objectViewer"],
    # The training job reads datasets (and the evaluation set) and the whole
    # registry (the gate loads production); its writes are the conditional
    # grants below.
    ["trainer", "datasets", "roles/storage.objectViewer"],
    ["trainer", "models", "roles/storage.objectViewer"],
    # The monitor lists and reads the results of a window; its writes are
    # the conditional grant below.
    ["monitor", "results", "roles/storage.objectViewer"],
  ]

  # Bucket-level grants limited by IAM Conditions to object-name prefixes:
  # [service account key, bucket key, role, [prefixes]]. The trainer may
  # create (never replace: that needs delete) versions of the models it
  # trains, and replace only their aliases and gate decisions and its own
  # job output; another model's versions and aliases are out of its reach.
  conditional_bucket_grants = [
    ["trainer", "models", "roles/storage.objectCreator", [for m in local.trainer_models : "models/${m}/versions/"]],
    ["trainer", "models", "roles/storage.objectUser", concat(["training-runs/"],
    flatten([for m in local.trainer_models : ["models/${m}/aliases/", "models/${m}/decisions/"]]))],
    # The monitor writes its reports under monitoring/ only (a re-run of a
    # window replaces its report: objectUser), and reads the baselines of the
    # registry's versions, nothing else of the models bucket.
    ["monitor", "results", "roles/storage.objectUser", ["monitoring/"]],
    ["monitor", "models", "roles/storage.objectViewer", ["models/"]],
  ]
  trainer_models = coalesce(var.trainer_models, [var.model_name])

  # The storage permissions of the predefined roles granted here (from
  # https://cloud.google.com/storage/docs/access-control/iam-roles).
  role_permissions = {
    "roles/storage.objectViewer"       = ["storage.objects.get", "storage.objects.list"]
    "roles/storage.objectCreator"      = ["storage.objects.create"]
    "roles/storage.objectUser"         = ["storage.objects.create", "storage.objects.delete", "storage.objects.get", "storage.objects.list", "storage.objects.update"]
    "roles/storage.legacyBucketReader" = ["storage.buckets.get", "storage.objects.list"]
  }
  storage_grants = concat(
    [for g in local.bucket_grants : { account = g[0], bucket = g[1], role = g[2], prefixes = [""] }],
    [for g in local.conditional_bucket_grants : { account = g[0], bucket = g[1], role = g[2], prefixes = g[3] }],
    local.batch_storage_grants,
  )
  # Rows of storage_calls.csv whose prefix contains <model> stand for every
  # model the trainer trains; <batch-source> for every prefix the batch job
  # may read (batch.tf).
  storage_calls = flatten([for c in csvdecode(file("${path.module}/storage_calls.csv")) :
    [for m in(strcontains(c.prefix, "<model>") ? local.trainer_models : [""]) :
      [for b in(strcontains(c.prefix, "<batch-source>") ? var.batch.source_prefixes : [""]) :
    merge(c, { prefix = replace(replace(c.prefix, "<model>", m), "<batch-source>", b) })]]
  ])
  # Calls no grant covers: the account, bucket, permission and prefix match
  # (an IAM Condition's prefix must be a prefix of the call's).
  missing_storage_permissions = [for c in local.storage_calls : "${c.account} needs ${c.permission} on ${c.bucket}/${c.prefix}* (${c.why})"
    if !anytrue([for g in local.storage_grants : g.account == c.account && g.bucket == c.bucket &&
    contains(local.role_permissions[g.role], c.permission) && anytrue([for p in g.prefixes : startswith(c.prefix, p)])])
  ]

  # Project-level grants (roles that have no narrower resource to bind to).
  project_grants = [
    # Create and watch Vertex AI custom jobs.
    ["submit_training", "roles/aiplatform.user"],
    # Training job logs.
    ["trainer", "roles/logging.logWriter"],
    # Eventarc trigger identities receive events.
    ["upload_trigger", "roles/eventarc.eventReceiver"],
    ["training_trigger", "roles/eventarc.eventReceiver"],
    ["monitor_trigger", "roles/eventarc.eventReceiver"],
  ]
}

resource "google_service_account" "sa" {
  for_each = local.service_accounts

  project      = var.project_id
  account_id   = each.value.id
  display_name = each.value.name

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "grants" {
  for_each = { for g in local.bucket_grants : "${g[0]}/${g[1]}/${g[2]}" => g }

  bucket = google_storage_bucket.buckets[each.value[1]].name
  role   = each.value[2]
  member = google_service_account.sa[each.value[0]].member

  lifecycle {
    precondition {
      condition     = length(local.missing_storage_permissions) == 0
      error_message = "IAM does not grant what the code does (storage_calls.csv): ${join("; ", local.missing_storage_permissions)}"
    }
  }
}

resource "google_storage_bucket_iam_member" "conditional_grants" {
  for_each = { for g in local.conditional_bucket_grants : "${g[0]}/${g[1]}/${g[2]}" => g }

  bucket = google_storage_bucket.buckets[each.value[1]].name
  role   = each.value[2]
  member = google_service_account.sa[each.value[0]].member

  condition {
    title       = "prefixes"
    description = "Only objects under ${join(", ", each.value[3])}"
    expression = join(" || ", [for p in each.value[3] :
    "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.buckets[each.value[1]].name}/objects/${p}\")"])
  }
}

resource "google_project_iam_member" "grants" {
  for_each = { for g in local.project_grants : "${g[0]}/${g[1]}" => g }

  project = var.project_id
  role    = each.value[1]
  member  = google_service_account.sa[each.value[0]].member
}

# Topic-level publishers.
resource "google_pubsub_topic_iam_member" "predictions_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topics["predictions"].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.sa["predict_on_upload"].member
}

# The training job publishes into the registry, which announces new versions
# and alias moves on model-published.
resource "google_pubsub_topic_iam_member" "model_published_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topics["model_published"].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.sa["trainer"].member
}

# SubmitTraining creates Vertex AI jobs that run as the trainer service
# account: it may act as that account and no other.
resource "google_service_account_iam_member" "submit_acts_as_trainer" {
  service_account_id = google_service_account.sa["trainer"].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.sa["submit_training"].member
}

# The Eventarc trigger identities may invoke their own function only.
resource "google_cloud_run_v2_service_iam_member" "trigger_invokers" {
  for_each = {
    predict_on_upload = "upload_trigger"
    submit_training   = "training_trigger"
    monitor           = "monitor_trigger"
  }

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.functions[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.sa[each.value].member
}

# Predict is not public: only the listed principals may call it.
resource "google_cloud_run_v2_service_iam_member" "predict_invokers" {
  for_each = toset(var.predict_invokers)

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_service.functions["predict"].name
  role     = "roles/run.invoker"
  member   = each.value
}

# Direct Cloud Storage events: the Cloud Storage service agent publishes the
# bucket notifications Eventarc subscribes to.
resource "google_project_iam_member" "gcs_agent_pubsub_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}

# Eventarc push subscriptions authenticate to Cloud Run with an OIDC token of
# the trigger identity, minted by the Pub/Sub service agent (needed for
# projects created before 2021-04-08, harmless after).
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  for_each = toset(["upload_trigger", "training_trigger", "monitor_trigger"])

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service.apis]
}

### Cloud Build deployer ######################################################
# What cloudbuild.yaml does: push images, deploy Cloud Run services as the
# function service accounts, create/update Eventarc triggers as the trigger
# identities, attach dead-letter topics to their subscriptions, write logs.

resource "google_service_account" "deployer" {
  count = var.create_deployer_service_account ? 1 : 0

  project      = var.project_id
  account_id   = "${var.name_prefix}-deployer"
  display_name = "Orchard Cloud Build deployer"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "deployer" {
  for_each = var.create_deployer_service_account ? toset([
    "roles/run.developer",
    "roles/eventarc.developer",
    "roles/logging.logWriter",
  ]) : toset([])

  project = var.project_id
  role    = each.value
  member  = google_service_account.deployer[0].member
}

resource "google_artifact_registry_repository_iam_member" "deployer_writer" {
  count = var.create_deployer_service_account ? 1 : 0

  project    = var.project_id
  location   = var.region
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.deployer[0].member
}

# Deploying a service or trigger that runs as an account needs actAs on it.
resource "google_service_account_iam_member" "deployer_acts_as" {
  for_each = var.create_deployer_service_account ? toset([
    "predict", "predict_on_upload", "submit_training", "upload_trigger", "training_trigger", "monitor", "monitor_trigger", "batch",
  ]) : toset([])

  service_account_id = google_service_account.sa[each.key].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.deployer[0].member
}

# Attaching a dead-letter topic to the Eventarc-created subscriptions: editor
# on those two subscriptions and on their dead-letter topics, nothing else.
resource "google_pubsub_topic_iam_member" "deployer_dead_letter" {
  for_each = var.create_deployer_service_account ? toset(["training_requests", "upload_events"]) : toset([])

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.editor"
  member  = google_service_account.deployer[0].member
}

resource "google_pubsub_subscription_iam_member" "deployer_eventarc_subscriptions" {
  for_each = var.create_deployer_service_account ? local.eventarc_subscriptions : {}

  project      = var.project_id
  subscription = each.value.subscription
  role         = "roles/pubsub.editor"
  member       = google_service_account.deployer[0].member
}

# Source staging for `gcloud builds submit --gcs-source-staging-dir`: with a
# user-specified build service account, the build reads its source from here
# (the default gs://<project>_cloudbuild bucket is not Terraform's to grant on).
resource "google_storage_bucket" "build_staging" {
  count = var.create_deployer_service_account ? 1 : 0

  name     = "${local.bucket_prefix}-build"
  project  = var.project_id
  location = upper(var.region)

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true # only build sources live here

  labels = {
    purpose = "build-staging"
  }

  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_iam_member" "deployer_staging" {
  count = var.create_deployer_service_account ? 1 : 0

  bucket = google_storage_bucket.build_staging[0].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.deployer[0].member
}
