package gcp

import (
	"strings"
	"testing"
)

func TestProjectFrom(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"GOOGLE_CLOUD_PROJECT": " p1 ", "GCP_PROJECT": "p2"}, "p1"},
		{map[string]string{"GOOGLE_CLOUD_PROJECT": " ", "GCP_PROJECT": "p2", "CLOUD_ML_PROJECT_ID": "p3"}, "p2"},
		{map[string]string{"CLOUD_ML_PROJECT_ID": "p3"}, "p3"},
	}
	for _, tt := range tests {
		if got := ProjectFrom(func(k string) string { return tt.env[k] }); got != tt.want {
			t.Errorf("ProjectFrom(%v) = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestTopicName(t *testing.T) {
	tests := []struct {
		project, topic, want, err string
	}{
		{"p", "t", "projects/p/topics/t", ""},
		{"", "projects/q/topics/t", "projects/q/topics/t", ""},
		{"p", "projects/q/topics/t", "projects/q/topics/t", ""},
		{"", "t", "", "no project"},
		{"p", "", "", "empty"},
		{"p", "projects/q/subscriptions/t", "", "want projects/P/topics/T"},
		{"p", "projects//topics/t", "", "want projects/P/topics/T"},
		{"p", "projects/q/topics/", "", "want projects/P/topics/T"},
	}
	for _, tt := range tests {
		got, err := TopicName(tt.project, tt.topic)
		if got != tt.want || (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("TopicName(%q, %q) = %q, %v; want %q, error mentioning %q", tt.project, tt.topic, got, err, tt.want, tt.err)
		}
	}
}

func TestParseTopic(t *testing.T) {
	if p, id, ok := ParseTopic("projects/p/topics/t"); !ok || p != "p" || id != "t" {
		t.Errorf("ParseTopic = %q, %q, %v", p, id, ok)
	}
	for _, bad := range []string{"t", "projects/p/topics", "projects/p/topics/t/x", "x/p/topics/t", "projects/p/subs/t"} {
		if _, _, ok := ParseTopic(bad); ok {
			t.Errorf("ParseTopic(%q) accepted", bad)
		}
	}
	if got := TopicProject("p", "projects/q/topics/t"); got != "q" {
		t.Errorf("TopicProject = %q, want q", got)
	}
	if got := TopicProject("p", "t"); got != "p" {
		t.Errorf("TopicProject = %q, want p", got)
	}
}
