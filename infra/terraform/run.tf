# The Cloud Run functions (Predict, PredictOnUpload, SubmitTraining and the
# drift Monitor). They run the same image (the Functions
# Framework server in functions/cmd/functions); FUNCTION_TARGET picks the
# function, which the framework then serves at "/".
#
# Terraform creates the services and owns their configuration; image
# rollouts come from Cloud Build (`gcloud run deploy --image`), so the image
# and the deploying client are ignored here after creation.

locals {
  # Each function's environment (besides GOOGLE_CLOUD_PROJECT, added to
  # every service). A null value is left out of the service's environment.
  #
  # Predict and PredictOnUpload serve the version the registry alias
  # MODEL_ALIAS of MODEL_NAME names, and reload it when the alias moves
  # (checked from requests at most every MODEL_POLL_SECONDS, default 10).
  # MODEL_URI, when var.model_uri is set, pins a fixed model instead.
  function_env = {
    predict = {
      FUNCTION_TARGET         = "Predict"
      REGISTRY_URI            = local.registry_uri
      MODEL_NAME              = var.model_name
      MODEL_ALIAS             = var.model_alias
      MODEL_URI               = local.model_uri
      INTRA_OP_THREADS        = "1"
      PREDICT_ALLOWED_BUCKETS = join(",", [google_storage_bucket.buckets["uploads"].name, google_storage_bucket.buckets["datasets"].name])
    }
    predict_on_upload = {
      FUNCTION_TARGET   = "PredictOnUpload"
      REGISTRY_URI      = local.registry_uri
      MODEL_NAME        = var.model_name
      MODEL_ALIAS       = var.model_alias
      MODEL_URI         = local.model_uri
      INTRA_OP_THREADS  = "1"
      UPLOAD_BUCKET     = google_storage_bucket.buckets["uploads"].name
      RESULTS_BUCKET    = google_storage_bucket.buckets["results"].name
      PREDICTIONS_TOPIC = google_pubsub_topic.topics["predictions"].id
      UPLOAD_PREFIXES   = join(",", var.upload_prefixes)
    }
    submit_training = {
      FUNCTION_TARGET         = "SubmitTraining"
      VERTEX_REGION           = local.vertex_region
      TRAINER_IMAGE           = local.trainer_image
      TRAINER_MACHINE_TYPE    = var.training_machine_type
      TRAINER_SERVICE_ACCOUNT = google_service_account.sa["trainer"].email
      TRAINING_OUTPUT_URI     = "${local.registry_uri}/training-runs"
      REGISTRY_URI            = local.registry_uri
      # Passed to the jobs: the gate's evaluation set, never the request's.
      EVAL_URI                 = var.eval_uri
      TRAINING_OVERRIDE_LIMITS = var.training_override_limits == "" ? null : var.training_override_limits
      # Handed to the training jobs: trainer -publish announces new
      # versions and promotions there.
      MODEL_PUBLISHED_TOPIC = google_pubsub_topic.topics["model_published"].id
    }
    # The drift monitor (monitor.tf): reads the results of a window and the
    # baselines in the registry, writes reports under monitoring/ in the
    # results bucket. A window is the tick interval, so windows tile.
    monitor = {
      FUNCTION_TARGET = "Monitor"
      REGISTRY_URI    = local.registry_uri
      RESULTS_BUCKET  = google_storage_bucket.buckets["results"].name
      MONITOR_WINDOW  = "${var.monitor_interval_minutes}m"
    }
  }

  # What each service is given: function_env without its null values.
  service_env = {
    for f, env in local.function_env : f => { for k, v in env : k => v if v != null }
  }

  functions = {
    predict = {
      service = "${var.name_prefix}-predict"
      # Called by users over HTTPS with an identity token (never public).
      ingress = "INGRESS_TRAFFIC_ALL"
    }
    predict_on_upload = {
      service = "${var.name_prefix}-predict-on-upload"
      # Only Eventarc calls it; its push counts as internal traffic.
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
    }
    submit_training = {
      service = "${var.name_prefix}-submit-training"
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
    }
    monitor = {
      service = "${var.name_prefix}-monitor"
      ingress = "INGRESS_TRAFFIC_INTERNAL_ONLY"
    }
  }

  # var.functions may leave the monitor out (it came later): these defaults
  # then apply. One window at a time, on one instance.
  function_sizing = merge({
    monitor = { cpu = "1", memory = "1Gi", concurrency = 1, max_instances = 1, min_instances = 0, timeout = "300s" }
  }, var.functions)
}

resource "google_cloud_run_v2_service" "functions" {
  for_each = local.functions

  project             = var.project_id
  name                = each.value.service
  location            = var.region
  ingress             = each.value.ingress
  deletion_protection = var.deletion_protection

  labels = {
    function = replace(each.key, "_", "-")
  }

  template {
    service_account                  = google_service_account.sa[each.key].email
    max_instance_request_concurrency = local.function_sizing[each.key].concurrency
    timeout                          = local.function_sizing[each.key].timeout
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = local.function_sizing[each.key].min_instances
      max_instance_count = local.function_sizing[each.key].max_instances
    }

    containers {
      image = local.functions_image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = local.function_sizing[each.key].cpu
          memory = local.function_sizing[each.key].memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = merge({ GOOGLE_CLOUD_PROJECT = var.project_id }, local.service_env[each.key])
        content {
          name  = env.key
          value = env.value
        }
      }

      startup_probe {
        tcp_socket {
          port = 8080
        }
        period_seconds    = 2
        failure_threshold = 30
      }
    }
  }

  lifecycle {
    ignore_changes = [
      template[0].containers[0].image,
      client,
      client_version,
    ]
  }

  depends_on = [google_project_service.apis]
}
