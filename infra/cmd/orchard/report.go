package main

import (
	"context"
	"strings"

	"github.com/orchard-mlops/orchard/shared/registry"
)

// reportFile is the per-run report a model directory carries (trainer/train).
const reportFile = "report/index.html"

// reportLinks returns, for each version, a link to its training report:
// file:// for a local registry, the Cloud Console's authenticated
// storage.cloud.google.com URL for gs:// (opens in a browser signed in to
// the project), "" when the version has no report.
func reportLinks(ctx context.Context, reg *registry.Registry, vs []registry.VersionInfo) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		st := reg.VersionStore(v.Model, v.Version)
		if _, err := st.Attributes(ctx, reportFile); err != nil {
			continue
		}
		out[i] = browserURL(st.URI(reportFile))
	}
	return out
}

func browserURL(uri string) string {
	if rest, ok := strings.CutPrefix(uri, "gs://"); ok {
		return "https://storage.cloud.google.com/" + rest
	}
	return uri
}
