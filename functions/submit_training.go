package functions

import (
	ff "github.com/GoogleCloudPlatform/functions-framework-go/functions"

	"github.com/orchard-mlops/orchard/functions/submittraining"
)

// SubmitTraining (google.cloud.pubsub.topic.v1.messagePublished) turns a
// training request into a Vertex AI CustomJob; see package submittraining
// for the message format, the environment it reads on its first event
// (GOOGLE_CLOUD_PROJECT, VERTEX_REGION, VERTEX_ENDPOINT, TRAINER_IMAGE,
// TRAINING_OUTPUT_URI, REGISTRY_URI, ...) and its retry behaviour.
func init() {
	ff.CloudEvent("SubmitTraining", submittraining.FromEnv())
}
