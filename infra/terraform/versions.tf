terraform {
  # optional() attribute defaults (1.3) and terraform_data (1.4). Checked
  # offline with 1.11.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # Checked offline against 8.0.0 (infra/checks/run.sh builds it from source).
      version = ">= 7.0, < 9.0"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region

  # Every resource carries these labels (where the API supports labels).
  default_labels = {
    app        = "orchard"
    managed-by = "terraform"
  }
}
