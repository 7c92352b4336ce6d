# The drift monitor (docs/monitoring.md): every var.monitor_interval_minutes
# Cloud Scheduler publishes a tick on monitor-tick, Eventarc delivers it to
# the Monitor function (run.tf, as the monitor service account), which
# aggregates the window's results per model version against each version's
# baseline, writes a report under gs://<results>/monitoring/ and logs one
# WARNING line per threshold crossed; the alert policy below turns those
# lines into incidents.
#
# IAM (iam.tf, checked against storage_calls.csv): the monitor reads the
# results bucket and the registry's models/ prefix, and writes only under
# monitoring/ of the results bucket (an IAM Condition).

locals {
  # Cron for "every N minutes" (N divides the hour: see the variable).
  monitor_schedule = var.monitor_interval_minutes == 60 ? "0 * * * *" : "*/${var.monitor_interval_minutes} * * * *"
}

resource "google_eventarc_trigger" "monitor" {
  project  = var.project_id
  name     = "${var.name_prefix}-monitor"
  location = var.region

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.topics["monitor_tick"].id
    }
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.functions["monitor"].name
      region  = var.region
    }
  }

  service_account = google_service_account.sa["monitor_trigger"].email

  depends_on = [
    google_project_iam_member.grants,
    google_cloud_run_v2_service_iam_member.trigger_invokers,
  ]
}

# Cloud Scheduler publishes as its own service agent, which may publish to
# any topic of the project. A tick carries no data: the monitor's window then
# ends at the message's publish time, so a redelivered tick recomputes the
# same window (a "{}" body would make it end at the run's own time). Pub/Sub
# needs data or an attribute: the attribute says where the tick came from.
resource "google_cloud_scheduler_job" "monitor_tick" {
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-monitor-tick"
  description = "Runs the Orchard drift monitor every ${var.monitor_interval_minutes} minutes (docs/monitoring.md)."
  schedule    = local.monitor_schedule
  time_zone   = "Etc/UTC"

  # A missed tick is not worth retrying: the next one covers its own window.
  retry_config {
    retry_count = 0
  }

  pubsub_target {
    topic_name = google_pubsub_topic.topics["monitor_tick"].id
    attributes = {
      origin = "cloud-scheduler"
    }
  }

  depends_on = [google_project_service.apis, google_eventarc_trigger.monitor]
}

# One incident per drifted feature, model and version: the monitor logs a
# WARNING line with jsonPayload.drift_alert = the feature for each threshold
# it finds crossed (docs/monitoring.md names the fields).
resource "google_monitoring_alert_policy" "drift" {
  project      = var.project_id
  display_name = "Orchard: input drift or accuracy drop (monitor WARNING)"
  combiner     = "OR"

  conditions {
    display_name = "the drift monitor logged a threshold crossed"
    condition_matched_log {
      filter = local.drift_log_filter
      label_extractors = {
        feature = "EXTRACT(jsonPayload.drift_alert)"
        model   = "EXTRACT(jsonPayload.model)"
        version = "EXTRACT(jsonPayload.version)"
        measure = "EXTRACT(jsonPayload.measure)"
        report  = "EXTRACT(jsonPayload.report)"
      }
    }
  }

  # Log-match conditions need a notification rate limit; one tick's worth.
  alert_strategy {
    notification_rate_limit {
      period = "${max(var.monitor_interval_minutes, 5) * 60}s"
    }
    auto_close = "${max(var.monitor_interval_minutes * 60 * 3, 1800)}s"
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    subject   = "Orchard drift: $${log.extracted_label.feature} on $${log.extracted_label.model} $${log.extracted_label.version}"
    content   = "The drift monitor found $${log.extracted_label.feature} ($${log.extracted_label.measure}) of model $${log.extracted_label.model} $${log.extracted_label.version} past its threshold. Open the report ($${log.extracted_label.report}, also `orchard monitor`), compare the window's histograms with the baseline's, and look at recent uploads. See docs/monitoring.md."
  }

  depends_on = [google_project_service.apis]
}
