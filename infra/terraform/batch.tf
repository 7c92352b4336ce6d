# Batch prediction: a Cloud Run job that classifies every image below a
# gs:// prefix, sharded over its tasks (functions/cmd/batch, in the
# functions image). `orchard batch -prefix gs://...` runs it through the
# Cloud Run Admin API with BATCH_PREFIX and MODEL_VERSION (the alias
# resolved once for every task) as overrides, and prints the run summary.
# Results land in the results bucket beside PredictOnUpload's, under the
# same names and exactly-once rule; summaries under _batch/<execution>/.
#
# Terraform creates the job and owns its configuration; Cloud Build rolls
# the image (`gcloud run jobs deploy --image`, infra/docker/deploy.sh), so
# the image and client are ignored here after creation.

locals {
  batch_job = "${var.name_prefix}-batch"

  # The job's own account (iam.tf's service_accounts has the entry): read
  # images in the uploads and datasets buckets (object reads narrowed to
  # var.batch.source_prefixes by IAM Conditions; listing is a bucket-level
  # permission that conditions on object names cannot narrow, hence the
  # list-only legacyBucketReader), read the registry's models, and write
  # results and summaries. Checked against storage_calls.csv with every
  # other grant (iam.tf's storage_grants).
  batch_sources = ["uploads", "datasets"]
  batch_storage_grants = concat(
    [for b in local.batch_sources : { account = "batch", bucket = b, role = "roles/storage.legacyBucketReader", prefixes = [""] }],
    [for b in local.batch_sources : { account = "batch", bucket = b, role = "roles/storage.objectViewer", prefixes = var.batch.source_prefixes }],
    [
      { account = "batch", bucket = "models", role = "roles/storage.objectViewer", prefixes = ["models/"] },
      # Writing a result replaces an older generation's (delete): objectUser.
      { account = "batch", bucket = "results", role = "roles/storage.objectUser", prefixes = [""] },
    ],
  )

  batch_env = {
    RESULTS_BUCKET   = google_storage_bucket.buckets["results"].name
    REGISTRY_URI     = local.registry_uri
    MODEL_NAME       = var.model_name
    INTRA_OP_THREADS = "1"
  }
}

resource "google_storage_bucket_iam_member" "batch" {
  for_each = { for g in local.batch_storage_grants : "${g.bucket}/${g.role}" => g }

  bucket = google_storage_bucket.buckets[each.value.bucket].name
  role   = each.value.role
  member = google_service_account.sa["batch"].member

  dynamic "condition" {
    for_each = each.value.prefixes == tolist([""]) ? [] : [each.value.prefixes]
    content {
      title       = "prefixes"
      description = "Only objects under ${join(", ", condition.value)}"
      expression = join(" || ", [for p in condition.value :
      "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.buckets[each.value.bucket].name}/objects/${p}\")"])
    }
  }
}

resource "google_project_iam_member" "batch_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.sa["batch"].member
}

resource "google_cloud_run_v2_job" "batch" {
  project             = var.project_id
  name                = local.batch_job
  location            = var.region
  deletion_protection = var.deletion_protection

  labels = {
    function = "batch"
  }

  template {
    task_count  = var.batch.tasks
    parallelism = var.batch.parallelism

    template {
      service_account = google_service_account.sa["batch"].email
      timeout         = var.batch.task_timeout
      max_retries     = var.batch.max_retries

      containers {
        image   = local.functions_image
        command = ["/usr/local/bin/batch"]

        resources {
          limits = {
            cpu    = var.batch.cpu
            memory = var.batch.memory
          }
        }

        dynamic "env" {
          for_each = merge({ GOOGLE_CLOUD_PROJECT = var.project_id }, local.batch_env)
          content {
            name  = env.key
            value = env.value
          }
        }
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [google_project_service.apis]
}

# Who may start and follow runs (orchard batch): run with overrides and
# read the job and its executions; read the registry (the alias is resolved
# by the launcher) and the results bucket (the summaries).
resource "google_cloud_run_v2_job_iam_member" "batch_runners" {
  for_each = { for p in setproduct(var.batch.runners, ["roles/run.jobsExecutorWithOverrides", "roles/run.viewer"]) : "${p[0]} ${p[1]}" => p }

  project  = var.project_id
  location = var.region
  name     = google_cloud_run_v2_job.batch.name
  role     = each.value[1]
  member   = each.value[0]
}

resource "google_storage_bucket_iam_member" "batch_runners" {
  for_each = { for p in setproduct(var.batch.runners, ["models", "results"]) : "${p[0]} ${p[1]}" => p }

  bucket = google_storage_bucket.buckets[each.value[1]].name
  role   = "roles/storage.objectViewer"
  member = each.value[0]
}
