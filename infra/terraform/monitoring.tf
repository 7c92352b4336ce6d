# System telemetry as configuration: log-based metrics, a Cloud Monitoring
# dashboard, SLOs with burn-rate alerts, and alerts on errors (the drift
# alert is in monitor.tf, the dead-letter alert in pubsub.tf).
#
# Where the figures come from:
#   - Cloud Run's built-in metrics (run.googleapis.com/...): request count by
#     response code class, request latencies, container startup latencies
#     (cold starts), instance count, memory and CPU utilisation;
#   - Pub/Sub's num_undelivered_messages on the dead-letter subscriptions;
#   - log-based metrics (below) over the one structured JSON line every
#     request or event logs (functions/README.md): predictions by label,
#     failures by kind, upload-to-result time, drift warnings. They need
#     nothing deployed beside the functions;
#   - the drift monitor's figure lines (one INFO line per feature's
#     divergence, OOD share and live accuracy of each report), as the
#     log-based distribution drift_figures: the drift charts need nothing
#     deployed beside the Monitor function.
# The OpenTelemetry instruments (functions/telemetry: the prediction
# counters and the monitor's orchard.monitor.* gauges) reach Cloud
# Monitoring only through an OTLP collector (docs/deploy.md, "Monitoring");
# the deployed services set no OTEL_* exporter, so no chart here reads them.

locals {
  # Services the charts and log-based metrics cover.
  service_names = [for f in local.functions : f.service]
  services_in   = "one_of(${join(", ", [for s in local.service_names : "\"${s}\""])})"
  logs_in       = "(${join(" OR ", [for s in local.service_names : "resource.labels.service_name=\"${s}\""])})"

  # Log-based metrics over the functions' request/event lines. Their metric
  # type is logging.googleapis.com/user/<name>.
  log_counters = {
    predictions = {
      description = "Images classified (Predict single-image requests, PredictOnUpload results), by top label and model version."
      filter      = "(jsonPayload.function=\"Predict\" OR jsonPayload.function=\"PredictOnUpload\") AND jsonPayload.label:*"
      labels = {
        function      = "jsonPayload.function"
        label         = "jsonPayload.label"
        model_version = "jsonPayload.model_version"
      }
    }
    prediction_errors = {
      description = "Failed requests and events of Predict and PredictOnUpload, by kind (jsonPayload.error_kind) and severity (WARNING: the caller's image or request, ERROR and above: Orchard's side)."
      filter      = "(jsonPayload.function=\"Predict\" OR jsonPayload.function=\"PredictOnUpload\") AND jsonPayload.error_kind:*"
      labels = {
        function   = "jsonPayload.function"
        error_kind = "jsonPayload.error_kind"
        severity   = "severity"
      }
    }
    drift_alerts = {
      description = "Thresholds the drift monitor found crossed (its WARNING lines), by feature, model and version."
      filter      = local.drift_log_filter_body
      labels = {
        feature = "jsonPayload.drift_alert"
        model   = "jsonPayload.model"
        version = "jsonPayload.version"
      }
    }
  }
  # The drift monitor's WARNING lines (docs/monitoring.md).
  drift_log_filter_body = "severity=WARNING AND jsonPayload.drift_alert:*"
  drift_log_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.functions["monitor"].service}\"",
    local.drift_log_filter_body,
  ])

  # The monitor's figure lines (functions/monitor, docs/monitoring.md).
  drift_figure_filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=\"${local.functions["monitor"].service}\"",
    "severity=INFO AND jsonPayload.drift_figure:* AND jsonPayload.value:*",
  ])

  metric = {
    drift_figures     = "logging.googleapis.com/user/${var.name_prefix}/drift_figures"
    predictions       = "logging.googleapis.com/user/${var.name_prefix}/predictions"
    prediction_errors = "logging.googleapis.com/user/${var.name_prefix}/prediction_errors"
    drift_alerts      = "logging.googleapis.com/user/${var.name_prefix}/drift_alerts"
    upload_to_result  = "logging.googleapis.com/user/${var.name_prefix}/upload_to_result"
  }
}

resource "google_logging_metric" "counters" {
  for_each = local.log_counters

  project     = var.project_id
  name        = "${var.name_prefix}/${each.key}"
  description = each.value.description
  filter      = "resource.type=\"cloud_run_revision\" AND ${local.logs_in} AND ${each.value.filter}"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    dynamic "labels" {
      for_each = each.value.labels
      content {
        key        = labels.key
        value_type = "STRING"
      }
    }
  }
  label_extractors = { for k, field in each.value.labels : k => "EXTRACT(${field})" }

  depends_on = [google_project_service.apis]
}

# Upload-to-result time: from the object's upload (the storage event's
# time) to its result being written, in milliseconds, read from the
# PredictOnUpload line's upload_to_result_ms field.
resource "google_logging_metric" "upload_to_result" {
  project     = var.project_id
  name        = "${var.name_prefix}/upload_to_result"
  description = "Milliseconds from an upload (the storage event's time) to its result written by PredictOnUpload (jsonPayload.upload_to_result_ms)."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.functions["predict_on_upload"].service}\" AND jsonPayload.function=\"PredictOnUpload\" AND jsonPayload.upload_to_result_ms:*"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "ms"
    labels {
      key        = "model_version"
      value_type = "STRING"
    }
  }
  value_extractor  = "EXTRACT(jsonPayload.upload_to_result_ms)"
  label_extractors = { model_version = "EXTRACT(jsonPayload.model_version)" }

  # 10 ms to ~15 minutes.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 1.35
      scale              = 10
    }
  }

  depends_on = [google_project_service.apis]
}

# The drift monitor's figures: one point per feature, model version and
# window (JS divergence, L-infinity distance, OOD share, live accuracy; all
# in 0..1), from the monitor's "drift figure" lines. The dashboard's drift
# charts read it; the OTel gauges carry the same figures for deployments
# with a collector.
resource "google_logging_metric" "drift_figures" {
  project     = var.project_id
  name        = "${var.name_prefix}/drift_figures"
  description = "The drift monitor's figures per window (jsonPayload.value, 0..1), by feature, measure (js, linf, share, accuracy), model and version."
  filter      = local.drift_figure_filter

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
    dynamic "labels" {
      for_each = toset(["feature", "measure", "model", "version"])
      content {
        key        = labels.value
        value_type = "STRING"
      }
    }
  }
  value_extractor  = "EXTRACT(jsonPayload.value)"
  label_extractors = { for k in ["feature", "measure", "model", "version"] : k => "EXTRACT(jsonPayload.${k == "feature" ? "drift_figure" : k})" }

  # 0..1 in steps of 0.01: thresholds (0.15, 0.3, 0.8) fall on bucket edges.
  bucket_options {
    linear_buckets {
      num_finite_buckets = 100
      width              = 0.01
      offset             = 0
    }
  }

  depends_on = [google_project_service.apis]
}

### SLOs ######################################################################

resource "google_monitoring_custom_service" "slo" {
  for_each = {
    predict = "Orchard Predict (HTTP)"
    upload  = "Orchard PredictOnUpload (upload to result)"
  }

  project      = var.project_id
  service_id   = "${var.name_prefix}-${each.key}"
  display_name = each.value

  telemetry {
    resource_name = "//run.googleapis.com/projects/${var.project_id}/locations/${var.region}/services/${local.functions[each.key == "predict" ? "predict" : "predict_on_upload"].service}"
  }

  depends_on = [google_project_service.apis]
}

locals {
  predict_requests = join(" AND ", [
    "metric.type=\"run.googleapis.com/request_count\"",
    "resource.type=\"cloud_run_revision\"",
    "resource.label.service_name=\"${local.functions["predict"].service}\"",
  ])
}

# Availability: requests not answered 5xx (503 overloaded or no model,
# 500 internal) over all requests. 4xx are the caller's.
resource "google_monitoring_slo" "predict_availability" {
  project      = var.project_id
  service      = google_monitoring_custom_service.slo["predict"].service_id
  slo_id       = "availability"
  display_name = "${var.slos.predict_availability * 100}% of Predict requests not answered 5xx (rolling ${var.slos.rolling_days} days)"

  goal                = var.slos.predict_availability
  rolling_period_days = var.slos.rolling_days

  request_based_sli {
    good_total_ratio {
      total_service_filter = local.predict_requests
      bad_service_filter   = "${local.predict_requests} AND metric.label.response_code_class=\"5xx\""
    }
  }
}

resource "google_monitoring_slo" "predict_latency" {
  project      = var.project_id
  service      = google_monitoring_custom_service.slo["predict"].service_id
  slo_id       = "latency"
  display_name = "${var.slos.predict_latency_goal * 100}% of Predict requests answered within ${var.slos.predict_latency_ms} ms (rolling ${var.slos.rolling_days} days)"

  goal                = var.slos.predict_latency_goal
  rolling_period_days = var.slos.rolling_days

  request_based_sli {
    distribution_cut {
      distribution_filter = join(" AND ", [
        "metric.type=\"run.googleapis.com/request_latencies\"",
        "resource.type=\"cloud_run_revision\"",
        "resource.label.service_name=\"${local.functions["predict"].service}\"",
      ])
      range {
        max = var.slos.predict_latency_ms
      }
    }
  }
}

resource "google_monitoring_slo" "upload_to_result" {
  project      = var.project_id
  service      = google_monitoring_custom_service.slo["upload"].service_id
  slo_id       = "upload-to-result"
  display_name = "${var.slos.upload_latency_goal * 100}% of uploads with a result within ${var.slos.upload_latency_ms} ms (rolling ${var.slos.rolling_days} days)"

  goal                = var.slos.upload_latency_goal
  rolling_period_days = var.slos.rolling_days

  request_based_sli {
    distribution_cut {
      distribution_filter = "metric.type=\"${local.metric.upload_to_result}\" AND resource.type=\"cloud_run_revision\""
      range {
        max = var.slos.upload_latency_ms
      }
    }
  }

  depends_on = [google_logging_metric.upload_to_result]
}

# Multiwindow, multi-burn-rate alerts (the SRE workbook's): "fast" pages
# when 2% of the period's error budget burns in an hour (rate 14.4 over 1 h,
# confirmed over 5 min), "slow" when 5% burns in 6 hours (rate 6 over 6 h,
# confirmed over 30 min). The short window lets the alert close soon after
# the burning stops.
locals {
  slo_objectives = {
    predict-availability = google_monitoring_slo.predict_availability
    predict-latency      = google_monitoring_slo.predict_latency
    upload-to-result     = google_monitoring_slo.upload_to_result
  }
  burn_rates = {
    fast = { rate = 14.4, long = 3600, short = 300 }
    slow = { rate = 6, long = 21600, short = 1800 }
  }
  burn_rate_alerts = merge([for s, slo in local.slo_objectives : {
    for speed, b in local.burn_rates : "${s}/${speed}" => merge(b, { slo = s, speed = speed, name = slo.name, display = slo.display_name })
  }]...)
}

resource "google_monitoring_alert_policy" "slo_burn_rate" {
  for_each = local.burn_rate_alerts

  project      = var.project_id
  display_name = "Orchard SLO ${each.value.slo}: ${each.value.speed} error-budget burn"
  combiner     = "AND"

  dynamic "conditions" {
    for_each = [each.value.long, each.value.short]
    content {
      display_name = "burn rate over ${conditions.value / 60} min above ${each.value.rate}"
      condition_threshold {
        filter          = "select_slo_burn_rate(\"${each.value.name}\", \"${conditions.value}s\")"
        comparison      = "COMPARISON_GT"
        threshold_value = each.value.rate
        duration        = "0s"
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "SLO \"${each.value.display}\" is burning its error budget ${each.value.rate}x faster than it can afford (${each.value.speed} window: ${each.value.long / 3600} h). See the Orchard dashboard, then docs/deploy.md (\"Monitoring\")."
  }
}

### Errors ####################################################################

resource "google_monitoring_alert_policy" "errors" {
  project      = var.project_id
  display_name = "Orchard: prediction failures or a failing monitor"
  combiner     = "OR"

  conditions {
    display_name = "server-side prediction failures of one kind above ${var.error_alert_threshold} in 5 min"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"${local.metric.prediction_errors}\"",
        "resource.type=\"cloud_run_revision\"",
        "metric.label.severity=one_of(\"ERROR\", \"CRITICAL\", \"ALERT\", \"EMERGENCY\")",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = var.error_alert_threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.error_kind", "metric.label.function"]
      }
    }
  }

  # A run of the monitor that fails (5xx) is a window without a report.
  conditions {
    display_name = "the drift monitor failed a run"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"run.googleapis.com/request_count\"",
        "resource.type=\"cloud_run_revision\"",
        "resource.label.service_name=\"${local.functions["monitor"].service}\"",
        "metric.label.response_code_class=\"5xx\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "${var.monitor_interval_minutes * 60}s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Predict or PredictOnUpload failed on Orchard's side (storage, model_unavailable, internal, collision...), or the Monitor function answered 5xx. The function's log lines carry the error and its kind; see docs/deploy.md (\"Monitoring\")."
  }

  depends_on = [google_logging_metric.counters]
}

### Dashboard #################################################################

locals {
  run_metric = { for m in ["request_count", "request_latencies", "container/startup_latencies", "container/instance_count", "container/memory/utilizations", "container/cpu/utilizations"] :
    m => join(" AND ", ["metric.type=\"run.googleapis.com/${m}\"", "resource.type=\"cloud_run_revision\"", "resource.label.service_name=${local.services_in}"])
  }
  dead_letter_backlog = join(" AND ", [
    "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
    "resource.type=\"pubsub_subscription\"",
    "resource.label.subscription_id=one_of(${join(", ", [for s in local.dead_letter_topics : "\"${s}\""])})",
  ])
  percentiles = [50, 95, 99]
  # The drift monitor's figures by measure (drift_figures). A window's
  # figure is one point an interval (the monitor's), so the charts align
  # over that interval: one point a window, its value the window's figure.
  drift_figure = { for m in ["js", "linf", "share", "accuracy"] :
    m => "metric.type=\"${local.metric.drift_figures}\" AND resource.type=\"cloud_run_revision\" AND metric.label.measure=\"${m}\""
  }
  drift_period = "${var.monitor_interval_minutes * 60}s"

  # Each chart: a title, a y-axis label and its series (filter, per-series
  # aligner, cross-series reducer, group-by fields).
  charts = [
    { title = "Requests per second by service", y = "req/s", series = [
      { filter = local.run_metric["request_count"], aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", by = ["resource.label.service_name"] },
    ] },
    { title = "Requests per second by response class", y = "req/s", series = [
      { filter = local.run_metric["request_count"], aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", by = ["resource.label.service_name", "metric.label.response_code_class"] },
    ] },
    { title = "Predict latency: p50, p95, p99 (ms)", y = "ms", series = [for p in local.percentiles :
      { filter = replace(local.run_metric["request_latencies"], local.services_in, "\"${local.functions["predict"].service}\""), aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", by = [] }
    ] },
    { title = "PredictOnUpload processing latency: p50, p95, p99 (ms)", y = "ms", series = [for p in local.percentiles :
      { filter = replace(local.run_metric["request_latencies"], local.services_in, "\"${local.functions["predict_on_upload"].service}\""), aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", by = [] }
    ] },
    { title = "Upload to result: p50, p95, p99 (ms)", y = "ms", series = [for p in local.percentiles :
      { filter = "metric.type=\"${local.metric.upload_to_result}\" AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", by = [] }
    ] },
    { title = "Failures by kind (per minute)", y = "failures", series = [
      { filter = "metric.type=\"${local.metric.prediction_errors}\" AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", by = ["metric.label.error_kind", "metric.label.function"] },
    ] },
    { title = "Predictions by label (per minute)", y = "predictions", series = [
      { filter = "metric.type=\"${local.metric.predictions}\" AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", by = ["metric.label.label"] },
    ] },
    { title = "Predictions by model version (per minute)", y = "predictions", series = [
      { filter = "metric.type=\"${local.metric.predictions}\" AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", by = ["metric.label.model_version"] },
    ] },
    { title = "Cold starts: container startup latency p50, p99 (ms)", y = "ms", series = [for p in [50, 99] :
      { filter = local.run_metric["container/startup_latencies"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_${p}", by = ["resource.label.service_name"] }
    ] },
    { title = "Instances by service and state", y = "instances", series = [
      { filter = local.run_metric["container/instance_count"], aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", by = ["resource.label.service_name", "metric.label.state"] },
    ] },
    { title = "Memory utilisation p99 by service", y = "share of limit", series = [
      { filter = local.run_metric["container/memory/utilizations"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_99", by = ["resource.label.service_name"] },
    ] },
    { title = "CPU utilisation p99 by service", y = "share of limit", series = [
      { filter = local.run_metric["container/cpu/utilizations"], aligner = "ALIGN_DELTA", reducer = "REDUCE_PERCENTILE_99", by = ["resource.label.service_name"] },
    ] },
    { title = "Dead-letter backlog (undelivered messages)", y = "messages", series = [
      { filter = local.dead_letter_backlog, aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", by = ["resource.label.subscription_id"] },
    ] },
    { title = "Drift warnings by feature (monitor)", y = "warnings", series = [
      { filter = "metric.type=\"${local.metric.drift_alerts}\" AND resource.type=\"cloud_run_revision\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", by = ["metric.label.feature", "metric.label.model", "metric.label.version"] },
    ] },
    { title = "Drift: JS divergence by feature (monitor)", y = "JS divergence", period = local.drift_period, series = [
      { filter = local.drift_figure["js"], aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", by = ["metric.label.feature", "metric.label.version"] },
    ] },
    { title = "Drift: L-infinity of labels and format (monitor)", y = "L-infinity", period = local.drift_period, series = [
      { filter = local.drift_figure["linf"], aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", by = ["metric.label.feature", "metric.label.version"] },
    ] },
    { title = "Out-of-distribution share (monitor)", y = "share", period = local.drift_period, series = [
      { filter = local.drift_figure["share"], aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", by = ["metric.label.model", "metric.label.version"] },
    ] },
    { title = "Live accuracy on labelled uploads (monitor)", y = "accuracy", period = local.drift_period, series = [
      { filter = local.drift_figure["accuracy"], aligner = "ALIGN_PERCENTILE_05", reducer = "REDUCE_MIN", by = ["metric.label.model", "metric.label.version"] },
    ] },
  ]

  chart_tiles = [for i, c in local.charts : {
    xPos   = (i % 2) * 24
    yPos   = 8 + floor(i / 2) * 16
    width  = 24
    height = 16
    widget = {
      title = c.title
      xyChart = {
        dataSets = [for s in c.series : {
          plotType   = "LINE"
          targetAxis = "Y1"
          timeSeriesQuery = {
            timeSeriesFilter = {
              filter = s.filter
              aggregation = {
                alignmentPeriod    = try(c.period, "60s")
                perSeriesAligner   = s.aligner
                crossSeriesReducer = s.reducer
                groupByFields      = s.by
              }
            }
          }
        }]
        yAxis = { label = c.y, scale = "LINEAR" }
      }
    }
  }]

  dashboard = {
    displayName = "Orchard (${var.name_prefix})"
    mosaicLayout = {
      columns = 48
      tiles = concat([{
        xPos   = 0
        yPos   = 0
        width  = 48
        height = 8
        widget = {
          title = "About"
          text = {
            format  = "MARKDOWN"
            content = "Orchard's services (${join(", ", local.service_names)}). Requests, latency, cold starts, instances and memory are Cloud Run's own metrics; predictions, failures, upload-to-result time, drift warnings and drift figures are log-based metrics over the functions' log lines (no OTLP collector needed; the OTel instruments are for deployments with one: docs/monitoring.md). Drift reports: gs://${google_storage_bucket.buckets["results"].name}/monitoring/."
          }
        }
      }], local.chart_tiles)
    }
  }
}

resource "google_monitoring_dashboard" "orchard" {
  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  depends_on = [google_project_service.apis, google_logging_metric.counters, google_logging_metric.upload_to_result, google_logging_metric.drift_figures]
}

output "monitoring" {
  description = "Cloud Monitoring: the dashboard, the SLOs (by name), the log-based metric types, and the drift monitor's schedule and topic."
  value = {
    dashboard      = google_monitoring_dashboard.orchard.id
    slos           = { for k, s in local.slo_objectives : k => s.name }
    log_metrics    = local.metric
    monitor_job    = google_cloud_scheduler_job.monitor_tick.id
    monitor_topic  = google_pubsub_topic.topics["monitor_tick"].id
    monitor_window = "${var.monitor_interval_minutes}m"
  }
}
