# Topics, their dead-letter topics, and the rights the Pub/Sub service agent
# needs to dead-letter: publish on the dead-letter topic and subscribe on the
# source subscription.
#
#   training-requests  SubmitTraining's trigger (through Eventarc)
#   predictions        PredictOnUpload publishes every result (PREDICTIONS_TOPIC)
#   model-published    the registry announces published versions and alias moves
#   monitor-tick       Cloud Scheduler's ticks for the drift monitor (monitor.tf)
#
# Eventarc creates the subscription behind each trigger itself (so Terraform
# cannot own its dead-letter policy; see eventarc.tf), and the Cloud Storage
# trigger's transport topic too, so the upload events get a dead-letter topic
# of their own here.

locals {
  topics = {
    training_requests = "${var.name_prefix}-training-requests"
    predictions       = "${var.name_prefix}-predictions"
    model_published   = "${var.name_prefix}-model-published"
    # Cloud Scheduler's ticks for the drift monitor (monitor.tf).
    monitor_tick = "${var.name_prefix}-monitor-tick"
  }
  # One dead-letter topic per source of messages.
  dead_letter_topics = {
    training_requests = "${var.name_prefix}-training-requests-dead-letter"
    predictions       = "${var.name_prefix}-predictions-dead-letter"
    model_published   = "${var.name_prefix}-model-published-dead-letter"
    upload_events     = "${var.name_prefix}-upload-events-dead-letter"
  }
  # Pull subscriptions Terraform owns: consumers of predictions and
  # model-published read from these.
  subscriptions = {
    predictions     = "${var.name_prefix}-predictions"
    model_published = "${var.name_prefix}-model-published"
  }
}

resource "google_pubsub_topic" "topics" {
  for_each = local.topics

  project = var.project_id
  name    = each.value

  # Lets a new subscriber replay the last day.
  message_retention_duration = "86400s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = local.dead_letter_topics

  project = var.project_id
  name    = each.value

  depends_on = [google_project_service.apis]
}

# A topic without a subscription drops what is published to it: keep the dead
# letters for a week, and never let the subscription expire.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = local.dead_letter_topics

  project = var.project_id
  name    = each.value
  topic   = google_pubsub_topic.dead_letter[each.key].id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "pull" {
  for_each = local.subscriptions

  project = var.project_id
  name    = each.value
  topic   = google_pubsub_topic.topics[each.key].id

  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.max_delivery_attempts
  }

  depends_on = [google_pubsub_topic_iam_member.dead_letter_publisher]
}

# Dead-lettering: the Pub/Sub service agent publishes to every dead-letter
# topic...
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = local.dead_letter_topics

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.key].name
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${local.pubsub_service_agent}"

  depends_on = [google_project_service.apis]
}

# ...and subscribes to (acknowledges forwarded messages on) every source
# subscription: the two Terraform owns...
resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = local.subscriptions

  project      = var.project_id
  subscription = google_pubsub_subscription.pull[each.key].name
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# ...and the two Eventarc created for the triggers.
resource "google_pubsub_subscription_iam_member" "eventarc_dead_letter_subscriber" {
  for_each = local.eventarc_subscriptions

  project      = var.project_id
  subscription = each.value.subscription
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${local.pubsub_service_agent}"
}

# Dead letters need a person: alert as soon as any dead-letter subscription
# holds a message for five minutes (inspect with `orchard deadletters`, replay
# with `orchard redrive` once the cause is fixed; see docs/deploy.md).
resource "google_monitoring_alert_policy" "dead_letters" {
  project      = var.project_id
  display_name = "Orchard: dead-lettered events waiting"
  combiner     = "OR"

  conditions {
    display_name = "undelivered messages on an Orchard dead-letter subscription"
    condition_threshold {
      filter = join(" AND ", [
        "resource.type = \"pubsub_subscription\"",
        "metric.type = \"pubsub.googleapis.com/subscription/num_undelivered_messages\"",
        "resource.label.subscription_id = one_of(${join(", ", [for s in google_pubsub_subscription.dead_letter : "\"${s.name}\""])})",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  notification_channels = var.alert_notification_channels

  documentation {
    mime_type = "text/markdown"
    content   = "Events were dead-lettered after ${var.max_delivery_attempts} failed deliveries. List them with `orchard deadletters -subscription SUB -project ${var.project_id}`, fix the cause (function logs by message ID), then `orchard redrive -subscription SUB -project ${var.project_id}`."
  }

  depends_on = [google_project_service.apis]
}
