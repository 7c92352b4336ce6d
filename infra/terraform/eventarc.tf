# Eventarc triggers and their identities:
#   uploads bucket, object finalized  -> PredictOnUpload (direct GCS event)
#   training-requests topic, message  -> SubmitTraining
#
# The trigger location must be the bucket's location for Cloud Storage
# events; the buckets live in var.region, as do the services.

resource "google_eventarc_trigger" "upload" {
  project  = var.project_id
  name     = "${var.name_prefix}-predict-on-upload"
  location = lower(google_storage_bucket.buckets["uploads"].location)

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.storage.object.v1.finalized"
  }
  matching_criteria {
    attribute = "bucket"
    value     = google_storage_bucket.buckets["uploads"].name
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.functions["predict_on_upload"].name
      region  = var.region
    }
  }

  service_account = google_service_account.sa["upload_trigger"].email

  depends_on = [
    google_project_iam_member.gcs_agent_pubsub_publisher,
    google_project_iam_member.grants,
    google_cloud_run_v2_service_iam_member.trigger_invokers,
  ]
}

resource "google_eventarc_trigger" "training" {
  project  = var.project_id
  name     = "${var.name_prefix}-submit-training"
  location = var.region

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  # Use Orchard's own topic rather than one Eventarc would create.
  transport {
    pubsub {
      topic = google_pubsub_topic.topics["training_requests"].id
    }
  }

  destination {
    cloud_run_service {
      service = google_cloud_run_v2_service.functions["submit_training"].name
      region  = var.region
    }
  }

  service_account = google_service_account.sa["training_trigger"].email

  depends_on = [
    google_project_iam_member.grants,
    google_cloud_run_v2_service_iam_member.trigger_invokers,
  ]
}

locals {
  # The subscriptions Eventarc created for the triggers, and the dead-letter
  # topic each should forward to.
  # try(): Eventarc always fills in the transport, but the mocked provider of
  # the offline tests (tests/) leaves computed blocks empty.
  eventarc_subscriptions = {
    upload = {
      subscription = try(google_eventarc_trigger.upload.transport[0].pubsub[0].subscription, "")
      dead_letter  = google_pubsub_topic.dead_letter["upload_events"].id
    }
    training = {
      subscription = try(google_eventarc_trigger.training.transport[0].pubsub[0].subscription, "")
      dead_letter  = google_pubsub_topic.dead_letter["training_requests"].id
    }
  }

  eventarc_dead_letter_commands = {
    for k, v in local.eventarc_subscriptions : k => join(" ", [
      "gcloud pubsub subscriptions update", v.subscription,
      "--project=${var.project_id}",
      "--dead-letter-topic=${v.dead_letter}",
      "--max-delivery-attempts=${var.max_delivery_attempts}",
      "--min-retry-delay=10s --max-retry-delay=600s",
    ])
  }
}

# Eventarc owns these subscriptions, so their dead-letter policy can only be
# set through the Pub/Sub API after the fact (Eventarc's documented way).
# Re-run whenever a trigger (and so its subscription) is replaced.
resource "terraform_data" "eventarc_dead_letter" {
  for_each = var.eventarc_dead_letter_via_gcloud ? local.eventarc_subscriptions : {}

  triggers_replace = [each.value.subscription, each.value.dead_letter, var.max_delivery_attempts]

  provisioner "local-exec" {
    command = local.eventarc_dead_letter_commands[each.key]
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_pubsub_subscription_iam_member.eventarc_dead_letter_subscriber,
  ]
}
