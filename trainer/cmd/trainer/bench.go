package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/orchard-mlops/orchard/trainer/train"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgFile := fs.String("config", "", "YAML config merged over the built-in default")
	steps := fs.Int("steps", 20, "timed training steps per variant")
	classes := fs.Int("classes", 10, "number of classes")
	convs := fs.String("conv", "im2col,native", "convolution variants to compare")
	bns := fs.String("bn", "true", "batch-norm settings to compare, e.g. true,false")
	jsonOut := fs.Bool("json", false, "print JSON lines")
	var sets multiFlag
	fs.Var(&sets, "set", "override a config key (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	backend, err := train.NewBackend()
	if err != nil {
		return err
	}
	defer backend.Finalize()
	for _, conv := range strings.Split(*convs, ",") {
		for _, bn := range strings.Split(*bns, ",") {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s := append([]string{"model.conv=" + conv, "model.batch_norm=" + bn}, sets...)
			cfg, err := loadConfig(*cfgFile, s, "")
			if err != nil {
				return err
			}
			r, err := train.Bench(backend, cfg, *classes, *steps)
			if err != nil {
				return fmt.Errorf("bench %s: %w", conv, err)
			}
			if *jsonOut {
				b, _ := json.Marshal(r)
				fmt.Fprintln(stdout, string(b))
			} else {
				fmt.Fprintln(stdout, r)
			}
		}
	}
	return nil
}
