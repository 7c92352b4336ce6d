# Orchard on Google Cloud: buckets, Pub/Sub, Artifact Registry, one service
# account per workload, the Cloud Run functions (one image, picked by
# FUNCTION_TARGET) and their Eventarc triggers, the drift monitor's schedule
# and Cloud Monitoring's dashboard, SLOs and alerts (monitoring.tf).
#
# Names are derived from var.name_prefix and var.bucket_prefix; cloudbuild.yaml
# derives the same names from its _PREFIX and _BUCKET_PREFIX substitutions, so
# the two stay interchangeable (see docs/deploy.md).

data "google_project" "this" {
  project_id = var.project_id
}

# Cloud Storage's service agent publishes the bucket notifications that
# Eventarc's direct Cloud Storage events are built on.
data "google_storage_project_service_account" "gcs" {
  project = var.project_id
}

locals {
  project_number = data.google_project.this.number
  vertex_region  = coalesce(var.vertex_region, var.region)
  bucket_prefix  = coalesce(var.bucket_prefix, "${var.project_id}-${var.name_prefix}")

  # Google-managed service agents (they exist once the API is enabled).
  pubsub_service_agent = "service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  registry_host   = "${var.region}-docker.pkg.dev"
  repository_url  = "${local.registry_host}/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  functions_image = coalesce(var.functions_image, "${local.repository_url}/functions:${var.image_tag}")
  trainer_image   = coalesce(var.trainer_image, "${local.repository_url}/trainer:${var.image_tag}")

  # The model registry's root (REGISTRY_URI).
  registry_uri = "gs://${google_storage_bucket.buckets["models"].name}"
  # MODEL_URI pins the predictors to a fixed model; null (not set in their
  # environment) lets them follow var.model_alias in the registry.
  model_uri = var.model_uri != "" ? var.model_uri : null

  apis = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "eventarcpublishing.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "storage.googleapis.com",
  ])
}

resource "google_project_service" "apis" {
  for_each = var.enable_apis ? local.apis : toset([])

  project = var.project_id
  service = each.value

  # Other workloads may use these APIs too: never switch them off on destroy.
  disable_on_destroy         = false
  disable_dependent_services = false
}
