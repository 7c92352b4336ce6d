// Package gcp holds the naming rules of the Google Cloud resources Orchard
// uses, with no client library: which environment variable names the
// project, and what a Pub/Sub topic name is. Every caller resolves a
// project and a topic through it, so "projects/P/topics/T" means the same
// everywhere.
package gcp

import (
	"fmt"
	"os"
	"strings"
)

// ProjectEnv are the variables that may name the project, in order:
// GOOGLE_CLOUD_PROJECT (what Orchard sets and the Cloud SDK reads),
// GCP_PROJECT (older Cloud Functions runtimes) and CLOUD_ML_PROJECT_ID
// (what Vertex AI sets in a training container).
var ProjectEnv = []string{"GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "CLOUD_ML_PROJECT_ID"}

// ProjectFrom returns the first non-blank ProjectEnv variable, trimmed, or "".
func ProjectFrom(getenv func(string) string) string {
	for _, k := range ProjectEnv {
		if v := strings.TrimSpace(getenv(k)); v != "" {
			return v
		}
	}
	return ""
}

// Project is ProjectFrom(os.Getenv).
func Project() string { return ProjectFrom(os.Getenv) }

// ParseTopic splits a full topic name, projects/P/topics/T, into its
// project and ID; ok is false for anything else (an ID alone included).
func ParseTopic(name string) (project, id string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "topics" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	return parts[1], parts[3], true
}

// TopicName is the full name of topic, which is either a full name
// (returned as it is) or an ID in project. An ID without a project, an
// empty topic and anything with a slash that is not a full name are errors.
func TopicName(project, topic string) (string, error) {
	if _, _, ok := ParseTopic(topic); ok {
		return topic, nil
	}
	switch {
	case topic == "":
		return "", fmt.Errorf("topic name is empty")
	case strings.Contains(topic, "/"):
		return "", fmt.Errorf("topic %q: want projects/P/topics/T or a topic ID", topic)
	case project == "":
		return "", fmt.Errorf("topic %q: no project (use projects/P/topics/T or set GOOGLE_CLOUD_PROJECT)", topic)
	}
	return "projects/" + project + "/topics/" + topic, nil
}

// TopicProject is the project of topic: the one its full name names, else
// project.
func TopicProject(project, topic string) string {
	if p, _, ok := ParseTopic(topic); ok {
		return p
	}
	return project
}
