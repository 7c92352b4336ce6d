# Offline tests of the configuration's logic: a mocked google provider (no
# credentials, no API calls) lets `terraform test` evaluate every expression,
# for_each and validation, then assert Orchard's IAM and wiring rules.
# Run by infra/checks/terraform.sh.

mock_provider "google" {
  # Mocked values are visible from plan time on (Terraform >= 1.11), so
  # for_each keys and indexes into computed blocks evaluate as after an apply.
  override_during = plan

  mock_data "google_project" {
    defaults = {
      number = "123456789012"
    }
  }
  mock_data "google_storage_project_service_account" {
    defaults = {
      email_address = "service-123456789012@gs-project-accounts.iam.gserviceaccount.com"
      member        = "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com"
    }
  }
  # Eventarc fills in the transport (the subscription it created).
  mock_resource "google_eventarc_trigger" {
    defaults = {
      transport = {
        pubsub = {
          topic        = "projects/orchard-test/topics/eventarc-europe-west1-trigger-000"
          subscription = "projects/orchard-test/subscriptions/eventarc-europe-west1-trigger-sub-000"
        }
      }
    }
  }
  mock_resource "google_storage_bucket" {
    defaults = {
      location = "EUROPE-WEST1"
    }
  }
}

# Service accounts get distinct, well-formed emails (IAM members are
# validated by the real provider schema even under a mock).
override_resource {
  override_during = plan
  target          = google_service_account.sa["predict"]
  values = {
    email  = "predict@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:predict@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/predict@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["predict_on_upload"]
  values = {
    email  = "predict-on-upload@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:predict-on-upload@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/predict-on-upload@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["submit_training"]
  values = {
    email  = "submit-training@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:submit-training@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/submit-training@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["trainer"]
  values = {
    email  = "trainer@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:trainer@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/trainer@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["upload_trigger"]
  values = {
    email  = "upload-trigger@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:upload-trigger@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/upload-trigger@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["training_trigger"]
  values = {
    email  = "training-trigger@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:training-trigger@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/training-trigger@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["monitor"]
  values = {
    email  = "monitor@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:monitor@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/monitor@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["monitor_trigger"]
  values = {
    email  = "monitor-trigger@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:monitor-trigger@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/monitor-trigger@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.deployer
  values = {
    email  = "deployer@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:deployer@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/deployer@orchard-test.iam.gserviceaccount.com"
  }
}

override_resource {
  override_during = plan
  target          = google_pubsub_topic.topics["training_requests"]
  values = {
    id = "projects/orchard-test/topics/orchard-training-requests"
  }
}
override_resource {
  override_during = plan
  target          = google_pubsub_topic.topics["predictions"]
  values = {
    id = "projects/orchard-test/topics/orchard-predictions"
  }
}
override_resource {
  override_during = plan
  target          = google_service_account.sa["batch"]
  values = {
    email  = "batch-job@orchard-test.iam.gserviceaccount.com"
    member = "serviceAccount:batch-job@orchard-test.iam.gserviceaccount.com"
    name   = "projects/orchard-test/serviceAccounts/batch-job@orchard-test.iam.gserviceaccount.com"
  }
}
override_resource {
  override_during = plan
  target          = google_pubsub_topic.topics["model_published"]
  values = {
    id = "projects/orchard-test/topics/orchard-model-published"
  }
}
override_resource {
  override_during = plan
  target          = google_pubsub_topic.topics["monitor_tick"]
  values = {
    id = "projects/orchard-test/topics/orchard-monitor-tick"
  }
}

variables {
  project_id                      = "orchard-test"
  predict_invokers                = ["group:ml-users@example.com"]
  eventarc_dead_letter_via_gcloud = false # the mock cannot run gcloud
}

run "wiring_and_least_privilege" {
  command = plan

  # No primitive roles, anywhere.
  assert {
    condition = alltrue([
      for g in google_project_iam_member.grants : !contains(["roles/owner", "roles/editor", "roles/viewer"], g.role)
    ])
    error_message = "a project grant uses a primitive role"
  }

  # One service account per workload.
  assert {
    condition     = length(google_service_account.sa) == 9 && length(distinct([for s in google_service_account.sa : s.account_id])) == 9
    error_message = "expected nine distinct service accounts (six, the monitor's two, the batch job's own)"
  }

  # Each function runs the functions image as its own service account, with
  # the right FUNCTION_TARGET.
  assert {
    condition = alltrue([
      for k, target in { predict = "Predict", predict_on_upload = "PredictOnUpload", submit_training = "SubmitTraining", monitor = "Monitor" } :
      contains([for e in google_cloud_run_v2_service.functions[k].template[0].containers[0].env : "${e.name}=${e.value}"], "FUNCTION_TARGET=${target}")
    ])
    error_message = "a service has the wrong FUNCTION_TARGET"
  }
  assert {
    condition = alltrue([
      for k, s in google_cloud_run_v2_service.functions : s.template[0].service_account == google_service_account.sa[k].email
    ])
    error_message = "a service does not run as its own service account"
  }

  # Predict is invoked only by the listed principals; the triggers' identities
  # only invoke their own function.
  assert {
    condition     = keys(google_cloud_run_v2_service_iam_member.predict_invokers) == ["group:ml-users@example.com"]
    error_message = "unexpected Predict invokers"
  }
  assert {
    condition = (
      google_cloud_run_v2_service_iam_member.trigger_invokers["predict_on_upload"].member == google_service_account.sa["upload_trigger"].member &&
      google_cloud_run_v2_service_iam_member.trigger_invokers["submit_training"].member == google_service_account.sa["training_trigger"].member &&
      google_cloud_run_v2_service_iam_member.trigger_invokers["monitor"].member == google_service_account.sa["monitor_trigger"].member
    )
    error_message = "trigger identities are not wired to their own functions"
  }

  # SubmitTraining may act as the trainer account and nothing else.
  assert {
    condition = (
      google_service_account_iam_member.submit_acts_as_trainer.service_account_id == google_service_account.sa["trainer"].name &&
      google_service_account_iam_member.submit_acts_as_trainer.role == "roles/iam.serviceAccountUser"
    )
    error_message = "SubmitTraining's actAs grant is not limited to the trainer account"
  }
  assert {
    condition     = contains([for g in google_project_iam_member.grants : "${g.member} ${g.role}" if g.member == google_service_account.sa["submit_training"].member], "${google_service_account.sa["submit_training"].member} roles/aiplatform.user")
    error_message = "SubmitTraining lacks roles/aiplatform.user"
  }

  # Triggers: finalize on the uploads bucket, messages on the training topic.
  assert {
    condition = (
      contains([for m in google_eventarc_trigger.upload.matching_criteria : "${m.attribute}=${m.value}"], "type=google.cloud.storage.object.v1.finalized") &&
      contains([for m in google_eventarc_trigger.upload.matching_criteria : "${m.attribute}=${m.value}"], "bucket=${google_storage_bucket.buckets["uploads"].name}")
    )
    error_message = "the upload trigger does not filter finalize events on the uploads bucket"
  }
  assert {
    condition     = google_eventarc_trigger.training.transport[0].pubsub[0].topic == "projects/orchard-test/topics/orchard-training-requests"
    error_message = "the training trigger does not use the training-requests topic"
  }

  # Buckets: uniform access everywhere, versioning on models only, results
  # elsewhere than the trigger bucket.
  assert {
    condition     = alltrue([for b in google_storage_bucket.buckets : b.uniform_bucket_level_access && b.public_access_prevention == "enforced"])
    error_message = "a bucket lacks uniform bucket-level access or public access prevention"
  }
  assert {
    condition     = [for k, b in google_storage_bucket.buckets : k if b.versioning[0].enabled] == ["models"]
    error_message = "only the models bucket should be versioned"
  }
  assert {
    condition     = google_storage_bucket.buckets["results"].name != google_storage_bucket.buckets["uploads"].name
    error_message = "results must not go to the trigger bucket"
  }

  # Every source subscription dead-letters, and the Pub/Sub service agent
  # can publish to every dead-letter topic.
  assert {
    condition     = alltrue([for s in google_pubsub_subscription.pull : s.dead_letter_policy[0].max_delivery_attempts == 5])
    error_message = "a pull subscription has no dead-letter policy"
  }
  # Every dead-letter topic keeps its messages on a subscription that never
  # expires, and its backlog raises an alert.
  assert {
    condition = length(google_pubsub_subscription.dead_letter) == length(google_pubsub_topic.dead_letter) && alltrue([for k, s in google_pubsub_subscription.dead_letter :
      s.expiration_policy[0].ttl == "" &&
      strcontains(google_monitoring_alert_policy.dead_letters.conditions[0].condition_threshold[0].filter, "\"${s.name}\"")
    ])
    error_message = "a dead-letter topic lacks a kept subscription or the backlog alert"
  }
  assert {
    condition = alltrue([
      for t in google_pubsub_topic_iam_member.dead_letter_publisher : t.member == "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    ]) && length(google_pubsub_topic_iam_member.dead_letter_publisher) == 4
    error_message = "the Pub/Sub service agent cannot publish to every dead-letter topic"
  }

  # The Cloud Storage service agent may publish (direct GCS events).
  assert {
    condition     = google_project_iam_member.gcs_agent_pubsub_publisher.member == "serviceAccount:service-123456789012@gs-project-accounts.iam.gserviceaccount.com"
    error_message = "the Cloud Storage service agent is not a Pub/Sub publisher"
  }

  # What the functions are told.
  assert {
    condition     = output.function_env.predict_on_upload.RESULTS_BUCKET == "orchard-test-orchard-results"
    error_message = "unexpected RESULTS_BUCKET"
  }

  # The predictors follow the registry's production alias of fruits (hot
  # reload on promotion); no MODEL_URI pin unless model_uri is set.
  assert {
    condition = alltrue([
      for k in ["predict", "predict_on_upload"] : length(setsubtract(
        ["REGISTRY_URI=gs://orchard-test-orchard-models", "MODEL_NAME=fruits", "MODEL_ALIAS=production"],
        [for e in google_cloud_run_v2_service.functions[k].template[0].containers[0].env : "${e.name}=${e.value}"]
      )) == 0
    ])
    error_message = "Predict and PredictOnUpload must get REGISTRY_URI (the models bucket), MODEL_NAME=fruits and MODEL_ALIAS=production"
  }
  assert {
    condition = alltrue([
      for k, s in google_cloud_run_v2_service.functions : !contains([for e in s.template[0].containers[0].env : e.name], "MODEL_URI")
    ]) && output.model_uri == null && !contains(keys(output.function_env.predict), "MODEL_URI")
    error_message = "a service pins MODEL_URI by default: it would never follow promotions"
  }
  assert {
    condition     = output.registry_uri == "gs://orchard-test-orchard-models" && output.function_env.submit_training.REGISTRY_URI == output.registry_uri
    error_message = "SubmitTraining's trainer must publish to the registry the predictors serve from"
  }

  # The predictors may read the registry; the training jobs (run as the
  # trainer account) may write to it and announce on model-published.
  assert {
    condition = alltrue([
      for k in ["predict", "predict_on_upload"] :
      google_storage_bucket_iam_member.grants["${k}/models/roles/storage.objectViewer"].bucket == google_storage_bucket.buckets["models"].name &&
      google_storage_bucket_iam_member.grants["${k}/models/roles/storage.objectViewer"].member == google_service_account.sa[k].member
    ])
    error_message = "Predict and PredictOnUpload cannot read the models bucket"
  }
  assert {
    condition = (
      output.function_env.submit_training.TRAINER_SERVICE_ACCOUNT == google_service_account.sa["trainer"].email &&
      google_storage_bucket_iam_member.conditional_grants["trainer/models/roles/storage.objectUser"].bucket == google_storage_bucket.buckets["models"].name &&
      google_storage_bucket_iam_member.conditional_grants["trainer/models/roles/storage.objectUser"].member == google_service_account.sa["trainer"].member
    )
    error_message = "training jobs cannot write to the registry (conditional objectUser on the models bucket for TRAINER_SERVICE_ACCOUNT)"
  }
  # The trainer writes only its own model's versions (create, never
  # replace), aliases and decisions, and its job output: never the whole
  # bucket, never another model.
  assert {
    condition = (
      !contains([for g in google_storage_bucket_iam_member.grants : g.role if g.member == google_service_account.sa["trainer"].member && g.bucket == google_storage_bucket.buckets["models"].name], "roles/storage.objectUser") &&
      strcontains(google_storage_bucket_iam_member.conditional_grants["trainer/models/roles/storage.objectCreator"].condition[0].expression, "/objects/models/fruits/versions/") &&
      !strcontains(google_storage_bucket_iam_member.conditional_grants["trainer/models/roles/storage.objectUser"].condition[0].expression, "/versions/")
    )
    error_message = "the trainer may write beyond its own model's versions/, aliases/, decisions/ and training-runs/"
  }
  # Overwriting a result (a re-uploaded name) needs storage.objects.delete.
  assert {
    condition     = google_storage_bucket_iam_member.grants["predict_on_upload/results/roles/storage.objectUser"].member == google_service_account.sa["predict_on_upload"].member
    error_message = "PredictOnUpload cannot replace results (needs objectUser: create and delete)"
  }
  assert {
    condition = (
      google_pubsub_topic_iam_member.model_published_publisher.topic == google_pubsub_topic.topics["model_published"].name &&
      google_pubsub_topic_iam_member.model_published_publisher.role == "roles/pubsub.publisher" &&
      google_pubsub_topic_iam_member.model_published_publisher.member == google_service_account.sa["trainer"].member
    )
    error_message = "training jobs cannot publish to the model-published topic"
  }
  assert {
    condition     = output.trainer_image == "europe-west1-docker.pkg.dev/orchard-test/orchard/trainer:latest"
    error_message = "unexpected default trainer image"
  }
}

run "model_uri_pins_the_predictors" {
  command = plan
  variables {
    model_uri = "gs://orchard-test-orchard-models/models/fruits/versions/v3"
  }
  assert {
    condition = alltrue([
      for k in ["predict", "predict_on_upload"] :
      contains([for e in google_cloud_run_v2_service.functions[k].template[0].containers[0].env : "${e.name}=${e.value}"], "MODEL_URI=gs://orchard-test-orchard-models/models/fruits/versions/v3")
    ]) && output.model_uri == "gs://orchard-test-orchard-models/models/fruits/versions/v3"
    error_message = "model_uri does not pin Predict and PredictOnUpload"
  }
  assert {
    condition     = !contains([for e in google_cloud_run_v2_service.functions["submit_training"].template[0].containers[0].env : e.name], "MODEL_URI")
    error_message = "SubmitTraining does not serve a model: it should not get MODEL_URI"
  }
}

run "empty_model_uri_is_no_pin" {
  command = plan
  variables {
    model_uri   = ""
    model_alias = "staging"
  }
  assert {
    condition = alltrue([
      for k in ["predict", "predict_on_upload"] :
      !contains([for e in google_cloud_run_v2_service.functions[k].template[0].containers[0].env : e.name], "MODEL_URI") &&
      contains([for e in google_cloud_run_v2_service.functions[k].template[0].containers[0].env : "${e.name}=${e.value}"], "MODEL_ALIAS=staging")
    ])
    error_message = "an empty model_uri must leave MODEL_URI unset (and model_alias must reach MODEL_ALIAS)"
  }
}

run "model_alias_follows_registry_names" {
  command = plan
  variables {
    model_alias = "Production"
  }
  expect_failures = [var.model_alias]
}

run "predict_is_never_public" {
  command = plan
  variables {
    predict_invokers = ["allUsers"]
  }
  expect_failures = [var.predict_invokers]
}

run "name_prefix_fits_service_account_ids" {
  command = plan
  variables {
    name_prefix = "a-much-too-long-prefix"
  }
  expect_failures = [var.name_prefix]
}

run "dead_letters_for_eventarc_subscriptions_via_gcloud" {
  command = plan
  variables {
    eventarc_dead_letter_via_gcloud = true
  }
  assert {
    condition     = length(terraform_data.eventarc_dead_letter) == 2
    error_message = "expected a dead-letter step per Eventarc subscription"
  }
}

# The drift monitor: scheduled ticks reach it, it writes only its reports, and
# the dashboard, SLOs and alerts name metrics that exist.
run "monitoring" {
  command = plan

  # Cloud Scheduler -> monitor-tick -> Eventarc -> Monitor, windows tiling
  # the tick interval.
  assert {
    condition = (
      google_cloud_scheduler_job.monitor_tick.schedule == "0 * * * *" &&
      google_cloud_scheduler_job.monitor_tick.pubsub_target[0].topic_name == "projects/orchard-test/topics/orchard-monitor-tick" &&
      google_cloud_scheduler_job.monitor_tick.pubsub_target[0].data == null &&
      google_eventarc_trigger.monitor.transport[0].pubsub[0].topic == "projects/orchard-test/topics/orchard-monitor-tick" &&
      google_eventarc_trigger.monitor.destination[0].cloud_run_service[0].service == "orchard-monitor" &&
      google_eventarc_trigger.monitor.service_account == google_service_account.sa["monitor_trigger"].email &&
      output.function_env.monitor.MONITOR_WINDOW == "60m" &&
      output.function_env.monitor.RESULTS_BUCKET == "orchard-test-orchard-results"
    )
    error_message = "the monitor is not ticked hourly through monitor-tick with an empty message (its window ending at the publish time), or its window does not match the tick"
  }
  assert {
    condition     = google_cloud_run_v2_service.functions["monitor"].ingress == "INGRESS_TRAFFIC_INTERNAL_ONLY" && google_cloud_run_v2_service.functions["monitor"].template[0].scaling[0].max_instance_count == 1
    error_message = "the monitor must take internal traffic only, on one instance"
  }

  # The monitor reads results and baselines; it writes under monitoring/ of
  # the results bucket and nowhere else.
  assert {
    condition = (
      alltrue([for g in google_storage_bucket_iam_member.grants : g.role == "roles/storage.objectViewer" if g.member == google_service_account.sa["monitor"].member]) &&
      alltrue([for k, g in google_storage_bucket_iam_member.conditional_grants : g.role == "roles/storage.objectViewer" || (
        g.bucket == google_storage_bucket.buckets["results"].name &&
        g.condition[0].expression == "resource.name.startsWith(\"projects/_/buckets/orchard-test-orchard-results/objects/monitoring/\")"
      ) if g.member == google_service_account.sa["monitor"].member])
    )
    error_message = "the monitor may write beyond monitoring/ in the results bucket"
  }

  # Every chart names a metric that exists in the deployed project: Cloud
  # Run's and Pub/Sub's own, or a log-based metric defined here (no chart
  # may need an OTLP collector, which is not deployed).
  assert {
    condition = alltrue(flatten([for t in jsondecode(google_monitoring_dashboard.orchard.dashboard_json).mosaicLayout.tiles : [
      for d in try(t.widget.xyChart.dataSets, []) : contains(concat(
        [for m in ["request_count", "request_latencies", "container/startup_latencies", "container/instance_count", "container/memory/utilizations", "container/cpu/utilizations"] : "run.googleapis.com/${m}"],
        ["pubsub.googleapis.com/subscription/num_undelivered_messages"],
        [for m in concat(values(google_logging_metric.counters), [google_logging_metric.upload_to_result, google_logging_metric.drift_figures]) : "logging.googleapis.com/user/${m.name}"],
      ), regex("metric\\.type=\"([^\"]+)\"", d.timeSeriesQuery.timeSeriesFilter.filter)[0])
    ]]))
    error_message = "the dashboard charts a metric that neither Cloud Run, Pub/Sub nor a log-based metric here defines"
  }

  # The drift charts read the monitor's figure lines (functions/monitor
  # TestCleanAndShiftedVersionsReportedApart checks the fields), one chart
  # per measure, aligned over the monitor's interval.
  assert {
    condition = (
      strcontains(google_logging_metric.drift_figures.filter, "resource.labels.service_name=\"orchard-monitor\"") &&
      strcontains(google_logging_metric.drift_figures.filter, "severity=INFO AND jsonPayload.drift_figure:*") &&
      google_logging_metric.drift_figures.value_extractor == "EXTRACT(jsonPayload.value)" &&
      google_logging_metric.drift_figures.label_extractors == tomap({ feature = "EXTRACT(jsonPayload.drift_figure)", measure = "EXTRACT(jsonPayload.measure)", model = "EXTRACT(jsonPayload.model)", version = "EXTRACT(jsonPayload.version)" }) &&
      google_logging_metric.drift_figures.metric_descriptor[0].value_type == "DISTRIBUTION"
    )
    error_message = "drift_figures does not extract the monitor's figure lines (jsonPayload.drift_figure, measure, model, version, value)"
  }
  assert {
    condition = toset(flatten([for t in jsondecode(google_monitoring_dashboard.orchard.dashboard_json).mosaicLayout.tiles : [
      for d in try(t.widget.xyChart.dataSets, []) : regex("metric\\.label\\.measure=\"([^\"]+)\"", d.timeSeriesQuery.timeSeriesFilter.filter)[0]
      if strcontains(d.timeSeriesQuery.timeSeriesFilter.filter, google_logging_metric.drift_figures.name) && d.timeSeriesQuery.timeSeriesFilter.aggregation.alignmentPeriod == "3600s"
    ]])) == toset(["js", "linf", "share", "accuracy"])
    error_message = "the dashboard lacks a drift chart per measure (js, linf, share, accuracy) over drift_figures, aligned over the monitor's interval"
  }

  # Predict: availability counts 5xx as bad, latency cuts at the threshold;
  # both on the Predict service. Every SLO has a fast and a slow burn alert.
  assert {
    condition = (
      strcontains(google_monitoring_slo.predict_availability.request_based_sli[0].good_total_ratio[0].bad_service_filter, "response_code_class=\"5xx\"") &&
      strcontains(google_monitoring_slo.predict_availability.request_based_sli[0].good_total_ratio[0].total_service_filter, "service_name=\"orchard-predict\"") &&
      strcontains(google_monitoring_slo.predict_latency.request_based_sli[0].distribution_cut[0].distribution_filter, "service_name=\"orchard-predict\"") &&
      google_monitoring_slo.predict_latency.request_based_sli[0].distribution_cut[0].range[0].max == 1000 &&
      strcontains(google_monitoring_slo.upload_to_result.request_based_sli[0].distribution_cut[0].distribution_filter, google_logging_metric.upload_to_result.name)
    )
    error_message = "an SLO measures the wrong service or the wrong thing"
  }
  assert {
    condition = alltrue([for slo in ["predict-availability", "predict-latency", "upload-to-result"] :
      alltrue([for speed in ["fast", "slow"] : length(google_monitoring_alert_policy.slo_burn_rate["${slo}/${speed}"].conditions) == 2 &&
      alltrue([for c in google_monitoring_alert_policy.slo_burn_rate["${slo}/${speed}"].conditions : startswith(c.condition_threshold[0].filter, "select_slo_burn_rate(")])])
    ])
    error_message = "an SLO lacks its fast or slow burn-rate alert"
  }

  # The drift alert matches the monitor's WARNING lines, per feature.
  assert {
    condition = (
      strcontains(google_monitoring_alert_policy.drift.conditions[0].condition_matched_log[0].filter, "resource.labels.service_name=\"orchard-monitor\"") &&
      strcontains(google_monitoring_alert_policy.drift.conditions[0].condition_matched_log[0].filter, "severity=WARNING AND jsonPayload.drift_alert:*") &&
      google_monitoring_alert_policy.drift.conditions[0].condition_matched_log[0].label_extractors["feature"] == "EXTRACT(jsonPayload.drift_alert)"
    )
    error_message = "the drift alert does not match the monitor's WARNING lines (jsonPayload.drift_alert)"
  }
}

run "monitor_every_15_minutes" {
  command = plan
  variables {
    monitor_interval_minutes = 15
  }
  assert {
    condition     = google_cloud_scheduler_job.monitor_tick.schedule == "*/15 * * * *" && output.function_env.monitor.MONITOR_WINDOW == "15m"
    error_message = "monitor_interval_minutes does not set the schedule and the window together"
  }
}

run "monitor_interval_divides_the_hour" {
  command = plan
  variables {
    monitor_interval_minutes = 7
  }
  expect_failures = [var.monitor_interval_minutes]
}

# The batch job: its own account, reading the image buckets (object reads
# narrowed to batch.source_prefixes by IAM Conditions), writing results only.
run "batch_job_least_privilege" {
  command = plan
  variables {
    batch = { tasks = 4, parallelism = 2, task_timeout = "1800s", source_prefixes = ["photos/", "backfill/"], runners = ["group:ml-users@example.com"] }
  }
  assert {
    condition = (
      google_cloud_run_v2_job.batch.template[0].task_count == 4 && google_cloud_run_v2_job.batch.template[0].parallelism == 2 &&
      google_cloud_run_v2_job.batch.template[0].template[0].timeout == "1800s" &&
      google_cloud_run_v2_job.batch.template[0].template[0].service_account == google_service_account.sa["batch"].email &&
      google_cloud_run_v2_job.batch.template[0].template[0].containers[0].command == tolist(["/usr/local/bin/batch"])
    )
    error_message = "the batch job does not take its variables, its account or the batch binary"
  }
  assert {
    condition = alltrue([
      for k, g in google_storage_bucket_iam_member.batch :
      contains(["roles/storage.legacyBucketReader", "roles/storage.objectViewer"], g.role) || (g.role == "roles/storage.objectUser" && g.bucket == google_storage_bucket.buckets["results"].name)
    ])
    error_message = "the batch account may write only to the results bucket"
  }
  assert {
    condition = alltrue([
      for b in ["uploads", "datasets"] :
      strcontains(google_storage_bucket_iam_member.batch["${b}/roles/storage.objectViewer"].condition[0].expression,
      "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.buckets[b].name}/objects/photos/\")")
    ])
    error_message = "the batch account's object reads are not narrowed to batch.source_prefixes"
  }
  assert {
    condition     = length(google_cloud_run_v2_job_iam_member.batch_runners) == 2 && length(google_storage_bucket_iam_member.batch_runners) == 2
    error_message = "batch runners need run-with-overrides and viewer on the job, and read on the registry and results"
  }
}
