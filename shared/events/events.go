// Package events is the one home of the CloudEvents Orchard sends and
// receives: the Eventarc type names, the source and subject a Cloud Storage
// event carries, the parsing of a storage event (PredictOnUpload) and the
// messagePublished body (the local Eventarc bridge produces it,
// SubmitTraining consumes it).
package events

// CloudEvent types (Eventarc's names).
const (
	StorageFinalized       = "google.cloud.storage.object.v1.finalized"
	StorageDeleted         = "google.cloud.storage.object.v1.deleted"
	StorageArchived        = "google.cloud.storage.object.v1.archived"
	StorageMetadataUpdated = "google.cloud.storage.object.v1.metadataUpdated"
	PubSubPublished        = "google.cloud.pubsub.topic.v1.messagePublished"
)

const (
	storageSourcePrefix  = "//storage.googleapis.com/projects/_/buckets/"
	storageSubjectPrefix = "objects/"
	pubsubSourcePrefix   = "//pubsub.googleapis.com/"
)

// StorageSource is the ce-source of a Cloud Storage event about bucket.
func StorageSource(bucket string) string { return storageSourcePrefix + bucket }

// StorageSubject is the ce-subject of a Cloud Storage event about object name.
func StorageSubject(name string) string { return storageSubjectPrefix + name }

// PubSubSource is the ce-source of a messagePublished event from topic
// (projects/P/topics/T).
func PubSubSource(topic string) string { return pubsubSourcePrefix + topic }
