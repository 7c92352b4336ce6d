output "project_id" {
  description = "Project the resources live in."
  value       = var.project_id
}

output "region" {
  description = "Region of the services, triggers, buckets and repository."
  value       = var.region
}

output "buckets" {
  description = "Bucket names by role: uploads, results, models, datasets."
  value       = { for k, b in google_storage_bucket.buckets : k => b.name }
}

output "registry_uri" {
  description = "The model registry's root (REGISTRY_URI): models/<name>/versions|aliases|decisions live under it."
  value       = local.registry_uri
}

output "model_name" {
  description = "MODEL_NAME: the registry model Predict and PredictOnUpload serve."
  value       = var.model_name
}

output "model_alias" {
  description = "MODEL_ALIAS: the alias of model_name they serve and follow (reloading when it moves), unless model_uri pins a model."
  value       = var.model_alias
}

output "model_uri" {
  description = "MODEL_URI pin given to Predict and PredictOnUpload (overrides the registry alias), or null when they follow model_alias."
  value       = local.model_uri
}

output "training_output_uri" {
  description = "TRAINING_OUTPUT_URI: Vertex AI jobs write under <this>/<job display name>."
  value       = "${local.registry_uri}/training-runs"
}

output "topics" {
  description = "Pub/Sub topic IDs (projects/P/topics/T) by role: training_requests, predictions, model_published, monitor_tick."
  value       = { for k, t in google_pubsub_topic.topics : k => t.id }
}

output "dead_letter_topics" {
  description = "Dead-letter topic IDs by source; each has a same-named pull subscription that keeps dead letters for 7 days."
  value       = { for k, t in google_pubsub_topic.dead_letter : k => t.id }
}

output "subscriptions" {
  description = "Pull subscriptions for consumers of predictions and model-published."
  value       = { for k, s in google_pubsub_subscription.pull : k => s.id }
}

output "eventarc_subscriptions" {
  description = "Subscriptions Eventarc created for the triggers (their dead-letter policy is set by gcloud, see eventarc_dead_letter_commands)."
  value       = { for k, v in local.eventarc_subscriptions : k => v.subscription }
}

output "eventarc_dead_letter_commands" {
  description = "The gcloud commands that attach dead-letter topics to the Eventarc subscriptions (run by Terraform when eventarc_dead_letter_via_gcloud is true, and by cloudbuild.yaml)."
  value       = local.eventarc_dead_letter_commands
}

output "artifact_registry_repository" {
  description = "Docker repository URL: push <this>/functions:<tag> and <this>/trainer:<tag>."
  value       = local.repository_url
}

output "functions_image" {
  description = "Image the Cloud Run services were created with."
  value       = local.functions_image
}

output "trainer_image" {
  description = "Trainer image Vertex AI jobs run (TRAINER_IMAGE)."
  value       = local.trainer_image
}

output "service_accounts" {
  description = "Service account emails by workload: predict, predict_on_upload, submit_training, trainer, monitor, upload_trigger, training_trigger, monitor_trigger."
  value       = { for k, sa in google_service_account.sa : k => sa.email }
}

output "deployer_service_account" {
  description = "Cloud Build deployer (gcloud builds submit --service-account=projects/<project>/serviceAccounts/<this>), or null."
  value       = var.create_deployer_service_account ? google_service_account.deployer[0].email : null
}

output "build_staging_bucket" {
  description = "Bucket for gcloud builds submit --gcs-source-staging-dir=gs://<this>/source, or null."
  value       = var.create_deployer_service_account ? google_storage_bucket.build_staging[0].name : null
}

output "services" {
  description = "Cloud Run services by function: name and URL."
  value = {
    for k, s in google_cloud_run_v2_service.functions : k => {
      name = s.name
      url  = s.uri
    }
  }
}

output "predict_url" {
  description = "URL of the Predict HTTP function (call it with an identity token: Authorization: Bearer $(gcloud auth print-identity-token))."
  value       = google_cloud_run_v2_service.functions["predict"].uri
}

output "function_env" {
  description = "Environment each function is deployed with (besides GOOGLE_CLOUD_PROJECT), for running them elsewhere or checking cloudbuild.yaml's copy."
  value       = local.service_env
}

output "eventarc_triggers" {
  description = "Eventarc trigger IDs by function."
  value = {
    predict_on_upload = google_eventarc_trigger.upload.id
    submit_training   = google_eventarc_trigger.training.id
    monitor           = google_eventarc_trigger.monitor.id
  }
}
