package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/trainer/compare"
)

func cmdCompare(ctx context.Context, stores *blob.Opener, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: trainer compare -out DIR [-registry URI] RUN_OR_VERSION...\n\n"+
			"A run is a model directory (local, file:///dir or gs://bucket/prefix) or NAME@VERSION of the registry.")
		fs.PrintDefaults()
	}
	out := fs.String("out", "", "directory for the comparison page (local or gs://; required)")
	regURI := fs.String("registry", os.Getenv("REGISTRY_URI"), "registry for NAME@VERSION arguments (default $REGISTRY_URI)")
	title := fs.String("title", "", "page title (default: the runs' labels)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("compare: -out and at least one run are required")
	}
	var runs []*compare.Run
	for _, a := range fs.Args() {
		uri, err := compare.Resolve(ctx, stores, a, *regURI)
		if err != nil {
			return err
		}
		r, err := compare.Load(ctx, stores, uri)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	t := *title
	if t == "" {
		t = "Comparison of " + strings.Join(fs.Args(), ", ")
	}
	if err := compare.Write(ctx, stores, *out, t, runs); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "compared %d runs -> %s\n", len(runs), strings.TrimRight(*out, "/")+"/index.html")
	return nil
}
