# Four buckets, all with uniform bucket-level access and public access
# prevention enforced:
#   uploads   images to classify; finalize events trigger PredictOnUpload
#   results   PredictOnUpload's output (a different bucket from its trigger,
#             or every result would trigger the function again)
#   models    the model registry (models/<name>/versions|aliases|decisions)
#             and Vertex AI job output (training-runs/); versioned
#   datasets  training data (folder-per-class images and manifests)

locals {
  buckets = {
    uploads = {
      versioning      = false
      delete_after    = var.uploads_retention_days
      purpose         = "uploads"
      keep_noncurrent = null
    }
    results = {
      versioning      = false
      delete_after    = var.results_retention_days
      purpose         = "results"
      keep_noncurrent = null
    }
    models = {
      versioning      = true
      delete_after    = 0
      purpose         = "models"
      keep_noncurrent = var.model_noncurrent_retention_days
    }
    datasets = {
      versioning      = false
      delete_after    = 0
      purpose         = "datasets"
      keep_noncurrent = null
    }
  }
}

resource "google_storage_bucket" "buckets" {
  for_each = local.buckets

  name     = "${local.bucket_prefix}-${each.key}"
  project  = var.project_id
  location = upper(var.region)

  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets

  labels = {
    purpose = each.value.purpose
  }

  versioning {
    enabled = each.value.versioning
  }

  # Age-based expiry (uploads, results).
  dynamic "lifecycle_rule" {
    for_each = each.value.delete_after > 0 ? [each.value.delete_after] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  # Versioned bucket: drop noncurrent versions after a while, and never keep
  # more than 10 of them per object.
  dynamic "lifecycle_rule" {
    for_each = each.value.keep_noncurrent != null ? [each.value.keep_noncurrent] : []
    content {
      condition {
        days_since_noncurrent_time = lifecycle_rule.value
        with_state                 = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }
  dynamic "lifecycle_rule" {
    for_each = each.value.keep_noncurrent != null ? [1] : []
    content {
      condition {
        num_newer_versions = 10
        with_state         = "ARCHIVED"
      }
      action {
        type = "Delete"
      }
    }
  }

  # Vertex AI job output (checkpoints, TensorBoard logs, the exported model
  # before it is published to the registry) is scratch.
  dynamic "lifecycle_rule" {
    for_each = each.key == "models" ? [var.training_runs_retention_days] : []
    content {
      condition {
        age            = lifecycle_rule.value
        matches_prefix = ["training-runs/"]
      }
      action {
        type = "Delete"
      }
    }
  }

  # Abandoned resumable and XML multipart uploads.
  lifecycle_rule {
    condition {
      age = 7
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  depends_on = [google_project_service.apis]
}
