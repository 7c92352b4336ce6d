variable "project_id" {
  description = "Google Cloud project ID that holds every Orchard resource."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region for Cloud Run, Eventarc, Artifact Registry, the buckets and (unless vertex_region is set) Vertex AI training jobs, e.g. \"europe-west1\"."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a single Google Cloud region such as europe-west1 (multi-regions are not supported: the upload trigger must live in the bucket's location)."
  }
}

variable "vertex_region" {
  description = "Region for Vertex AI custom training jobs; null means var.region."
  type        = string
  default     = null

  validation {
    condition     = var.vertex_region == null || can(regex("^[a-z]+-[a-z]+[0-9]+$", var.vertex_region))
    error_message = "vertex_region must be null or a single region such as europe-west4."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (services, topics, service accounts, the Artifact Registry repository). 3-13 characters so that service account IDs stay within 30."
  type        = string
  default     = "orchard"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-13 lowercase letters, digits or hyphens, start with a letter and not end with a hyphen."
  }
}

variable "bucket_prefix" {
  description = "Prefix of the four bucket names (<prefix>-uploads, -results, -models, -datasets). Bucket names are global, so the default is \"<project_id>-<name_prefix>\"."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_prefix == null || can(regex("^[a-z0-9][a-z0-9_-]{1,52}$", var.bucket_prefix))
    error_message = "bucket_prefix must be 2-53 lowercase letters, digits, hyphens or underscores (the longest suffix, \"-datasets\", must still fit in 63 characters)."
  }
}

variable "enable_apis" {
  description = "Enable the Google Cloud APIs Orchard uses. Set to false when a platform team manages project services."
  type        = bool
  default     = true
}

variable "force_destroy_buckets" {
  description = "Allow `terraform destroy` to delete buckets that still hold objects. Keep false outside throwaway projects."
  type        = bool
  default     = false
}

variable "deletion_protection" {
  description = "Deletion protection on the Cloud Run services (Terraform refuses to destroy them while true)."
  type        = bool
  default     = true
}

variable "uploads_retention_days" {
  description = "Days after which uploaded images are deleted from the uploads bucket (0 keeps them forever)."
  type        = number
  default     = 30

  validation {
    condition     = var.uploads_retention_days >= 0 && floor(var.uploads_retention_days) == var.uploads_retention_days
    error_message = "uploads_retention_days must be a whole number of days, 0 or more."
  }
}

variable "results_retention_days" {
  description = "Days after which prediction results are deleted from the results bucket (0 keeps them forever)."
  type        = number
  default     = 90

  validation {
    condition     = var.results_retention_days >= 0 && floor(var.results_retention_days) == var.results_retention_days
    error_message = "results_retention_days must be a whole number of days, 0 or more."
  }
}

variable "model_noncurrent_retention_days" {
  description = "Days a noncurrent (overwritten or deleted) object version is kept in the versioned models bucket. Registry aliases are rewritten on every promotion, so this bounds their history."
  type        = number
  default     = 90

  validation {
    condition     = var.model_noncurrent_retention_days >= 1 && floor(var.model_noncurrent_retention_days) == var.model_noncurrent_retention_days
    error_message = "model_noncurrent_retention_days must be a whole number of days, at least 1."
  }
}

variable "training_runs_retention_days" {
  description = "Days after which Vertex AI job output under training-runs/ in the models bucket (checkpoints, logs, unpublished models) is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.training_runs_retention_days >= 1 && floor(var.training_runs_retention_days) == var.training_runs_retention_days
    error_message = "training_runs_retention_days must be a whole number of days, at least 1."
  }
}

variable "image_tag" {
  description = "Tag of the functions and trainer images in the Artifact Registry repository, used when functions_image / trainer_image are null. Cloud Build pushes :latest and :$BUILD_ID."
  type        = string
  default     = "latest"

  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a valid container image tag."
  }
}

variable "functions_image" {
  description = "Full functions image reference (repo/path:tag or @sha256:digest). Null means <region>-docker.pkg.dev/<project>/<repository>/functions:<image_tag>. Terraform creates the services with it; later rollouts (Cloud Build) change the image and Terraform ignores that."
  type        = string
  default     = null

  validation {
    condition     = var.functions_image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?$", var.functions_image))
    error_message = "functions_image must be a container image reference such as europe-west1-docker.pkg.dev/p/orchard/functions:v1."
  }
}

variable "trainer_image" {
  description = "Full trainer image reference used for Vertex AI custom jobs. Null means <region>-docker.pkg.dev/<project>/<repository>/trainer:<image_tag>."
  type        = string
  default     = null

  validation {
    condition     = var.trainer_image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[A-Za-z0-9_.-]+)?(@sha256:[0-9a-f]{64})?$", var.trainer_image))
    error_message = "trainer_image must be a container image reference such as europe-west1-docker.pkg.dev/p/orchard/trainer:v1."
  }
}

variable "model_name" {
  description = "Registry model Predict and PredictOnUpload serve (MODEL_NAME: models/<model_name>/... in the models bucket)."
  type        = string
  default     = "fruits"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.model_name))
    error_message = "model_name must match the registry's name rule: ^[a-z][a-z0-9-]{0,62}$."
  }
}

variable "model_alias" {
  description = "Registry alias of model_name that Predict and PredictOnUpload serve and follow (MODEL_ALIAS): when the alias moves (a promotion or rollback), running instances load the version it names."
  type        = string
  default     = "production"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,62}$", var.model_alias))
    error_message = "model_alias must match the registry's name rule: ^[a-z][a-z0-9-]{0,62}$."
  }
}

variable "model_uri" {
  description = "Optional pin (MODEL_URI): a fixed model directory (gs://bucket/prefix, e.g. gs://<models bucket>/models/fruits/versions/v3) that Predict and PredictOnUpload serve instead of following model_alias. Null (or empty) means no pin: MODEL_URI is not set."
  type        = string
  default     = null

  validation {
    condition     = var.model_uri == null || var.model_uri == "" || can(regex("^gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/.*)?$", var.model_uri))
    error_message = "model_uri must be null, empty or a gs://bucket/prefix URI."
  }
}

variable "predict_invokers" {
  description = "IAM principals allowed to call the Predict HTTP function (roles/run.invoker on that service only), e.g. [\"group:ml-users@example.com\"]. The service is never public: allUsers and allAuthenticatedUsers are rejected."
  type        = list(string)
  default     = []

  validation {
    condition = alltrue([
      for m in var.predict_invokers :
      can(regex("^(user|group|serviceAccount|domain|principal|principalSet):.+$", m)) && !contains(["allUsers", "allAuthenticatedUsers"], m)
    ])
    error_message = "predict_invokers entries must be IAM principals such as group:team@example.com; allUsers and allAuthenticatedUsers are not allowed."
  }
}

variable "functions" {
  description = "Per-function Cloud Run sizing. Keys are predict, predict_on_upload, submit_training and (optional: 1 GiB, one instance, one request at a time) monitor; omitted attributes keep their defaults (2 GiB gives 1 vCPU)."
  type = map(object({
    cpu           = optional(string, "1")
    memory        = optional(string, "2Gi")
    concurrency   = optional(number, 8)
    max_instances = optional(number, 10)
    min_instances = optional(number, 0)
    timeout       = optional(string, "300s")
  }))
  default = {
    predict           = {}
    predict_on_upload = {}
    submit_training   = { memory = "512Mi", concurrency = 16, max_instances = 2, timeout = "60s" }
  }

  validation {
    condition     = length(setsubtract(toset(keys(var.functions)), toset(["predict", "predict_on_upload", "submit_training", "monitor"]))) == 0 && length(setintersection(toset(keys(var.functions)), toset(["predict", "predict_on_upload", "submit_training"]))) == 3
    error_message = "functions must have the keys predict, predict_on_upload and submit_training, and may have monitor."
  }
  validation {
    condition = alltrue([
      for f in values(var.functions) :
      f.concurrency >= 1 && f.concurrency <= 1000 && f.min_instances >= 0 && f.max_instances >= 1 && f.min_instances <= f.max_instances && can(regex("^[0-9]+s$", f.timeout))
    ])
    error_message = "each function needs 1 <= concurrency <= 1000, 0 <= min_instances <= max_instances, max_instances >= 1, and a timeout such as \"300s\"."
  }
}

variable "upload_prefixes" {
  description = "Object-name prefixes in the uploads bucket that PredictOnUpload classifies (UPLOAD_PREFIXES); empty means every object. Direct GCS events cannot be filtered by prefix, so other objects still invoke the function and are skipped."
  type        = list(string)
  default     = []
}

variable "training_machine_type" {
  description = "Compute Engine machine type for Vertex AI training jobs (the trainer is CPU-only)."
  type        = string
  default     = "n2-standard-8"

  validation {
    condition     = can(regex("^[a-z0-9]+-[a-z0-9-]+$", var.training_machine_type))
    error_message = "training_machine_type must be a machine type such as n2-standard-8."
  }
}

variable "max_delivery_attempts" {
  description = "Delivery attempts before Pub/Sub moves a message to its dead-letter topic (Pub/Sub allows 5-100)."
  type        = number
  default     = 5

  validation {
    condition     = var.max_delivery_attempts >= 5 && var.max_delivery_attempts <= 100 && floor(var.max_delivery_attempts) == var.max_delivery_attempts
    error_message = "max_delivery_attempts must be a whole number from 5 to 100."
  }
}

variable "monitor_interval_minutes" {
  description = "Minutes between two runs of the drift monitor (Cloud Scheduler -> monitor-tick -> Monitor); each run aggregates the window of this length that ends at its tick, so windows tile."
  type        = number
  default     = 60

  validation {
    condition     = contains([5, 10, 15, 20, 30, 60], var.monitor_interval_minutes)
    error_message = "monitor_interval_minutes must divide the hour: 5, 10, 15, 20, 30 or 60."
  }
}

variable "slos" {
  description = "Service level objectives (monitoring.tf), over a rolling period of rolling_days: Predict's availability (share of requests not answered 5xx) and latency (share answered within predict_latency_ms), and the share of uploads whose result is written within upload_latency_ms of the upload."
  type = object({
    rolling_days         = optional(number, 28)
    predict_availability = optional(number, 0.995)
    predict_latency_ms   = optional(number, 1000)
    predict_latency_goal = optional(number, 0.95)
    upload_latency_ms    = optional(number, 30000)
    upload_latency_goal  = optional(number, 0.95)
  })
  default = {}

  validation {
    condition     = alltrue([for g in [var.slos.predict_availability, var.slos.predict_latency_goal, var.slos.upload_latency_goal] : g > 0 && g < 1]) && var.slos.rolling_days >= 1 && var.slos.rolling_days <= 30 && var.slos.predict_latency_ms > 0 && var.slos.upload_latency_ms > 0
    error_message = "slos: goals must lie strictly between 0 and 1, rolling_days from 1 to 30, thresholds above 0."
  }
}

variable "error_alert_threshold" {
  description = "Server-side prediction failures (log lines of severity ERROR or above carrying an error_kind) in 5 minutes, per kind, above which the errors alert fires."
  type        = number
  default     = 5

  validation {
    condition     = var.error_alert_threshold >= 0
    error_message = "error_alert_threshold must be 0 or more."
  }
}

variable "eventarc_dead_letter_via_gcloud" {
  description = "Eventarc creates the Pub/Sub subscriptions behind its triggers itself, so Terraform cannot set their dead-letter policy. When true, a local-exec step runs `gcloud pubsub subscriptions update` on them after every trigger change (needs gcloud, authenticated, where terraform apply runs). When false, run the commands in the eventarc_dead_letter_commands output yourself."
  type        = bool
  default     = true
}

variable "artifact_keep_versions" {
  description = "Artifact Registry cleanup: the most recent N versions of each image are always kept; older ones are deleted after 30 days."
  type        = number
  default     = 20

  validation {
    condition     = var.artifact_keep_versions >= 1 && floor(var.artifact_keep_versions) == var.artifact_keep_versions
    error_message = "artifact_keep_versions must be a whole number, at least 1."
  }
}

variable "create_deployer_service_account" {
  description = "Create a service account for Cloud Build deployments (gcloud builds submit --service-account) with only the roles cloudbuild.yaml needs."
  type        = bool
  default     = true
}

variable "trainer_models" {
  description = "Registry models the training job may publish (its writes are limited to their versions/, aliases/ and decisions/ by IAM Conditions). Default: [model_name]."
  type        = list(string)
  default     = null
}

variable "eval_uri" {
  description = "The operator's evaluation set for the quality gate: a folder-per-class prefix (gs://bucket/prefix) the trainer can read, e.g. in the datasets bucket. The gate scores the candidate and production on it. Null: the gate compares the models' self-reported validation accuracy."
  type        = string
  default     = null
}

variable "training_override_limits" {
  description = "Upper bounds on what training requests may override, over the defaults (\"train.epochs=20,model.input_size=64\"; \"key=off\" removes a key). See trainer/config.ParseLimits."
  type        = string
  default     = ""
}

variable "alert_notification_channels" {
  description = "Monitoring notification channels (projects/P/notificationChannels/ID) every Orchard alert policy notifies: dead letters waiting, SLO burn rates, prediction errors, drift warnings. Empty: the policies still open incidents in the console."
  type        = list(string)
  default     = []
}

variable "batch" {
  description = "The batch prediction job (batch.tf): task count and parallelism of a run (orchard batch -tasks overrides the count; parallelism 0 runs as many as Cloud Run allows), per-task timeout and retries, task size, the object-name prefixes of the uploads and datasets buckets it may read ([\"\"]: all), and the principals that may start runs."
  type = object({
    tasks           = optional(number, 10)
    parallelism     = optional(number, 0)
    task_timeout    = optional(string, "3600s")
    max_retries     = optional(number, 3)
    cpu             = optional(string, "2")
    memory          = optional(string, "2Gi")
    source_prefixes = optional(list(string), [""])
    runners         = optional(list(string), [])
  })
  default = {}

  validation {
    condition     = var.batch.tasks >= 1 && var.batch.tasks <= 10000 && var.batch.parallelism >= 0 && var.batch.max_retries >= 0 && var.batch.max_retries <= 10 && can(regex("^[0-9]+s$", var.batch.task_timeout))
    error_message = "batch needs 1 <= tasks <= 10000, parallelism >= 0, 0 <= max_retries <= 10 and a task_timeout such as \"3600s\"."
  }
  validation {
    condition     = length(var.batch.source_prefixes) > 0 && alltrue([for p in var.batch.source_prefixes : p == "" || endswith(p, "/")])
    error_message = "batch.source_prefixes must be [\"\"] (every object) or folder prefixes ending in \"/\"."
  }
}
