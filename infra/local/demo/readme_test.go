package demo

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orchard-mlops/orchard/infra/local/stack"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/proc"
	"github.com/orchard-mlops/orchard/trainer/gendata"
)

// readmeSets shorten the README's training run to seconds; they are
// appended to its `bin/trainer train` line.
const readmeSets = " -set train.epochs=1 -set model.widths=[8,16] -set train.batch_size=16 -set report.worst_images=2"

// TestREADMETrainServe runs the README's train → eval → serve → curl block
// (between the readme-test markers) with bash, as a user would paste it,
// with four changes only: DATA and PHOTOS point at generated images, OUT at
// a temporary directory, PORT at a free port, and the train line gets
// readmeSets. Any failing command fails the test (bash -e -o pipefail).
func TestREADMETrainServe(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the trainer and the functions server and trains for an epoch")
	}
	if _, err := onnxrt.Find(); err != nil {
		if emulators.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	for _, tool := range []string{"bash", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if emulators.InCI() {
				t.Fatal(err)
			}
			t.Skip(err)
		}
	}
	root, err := stack.FindRepoRoot("")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	block, err := readmeBlock(string(readme))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	data, photos := filepath.Join(tmp, "train"), filepath.Join(tmp, "photos")
	if _, err := gendata.Generate(data, gendata.Options{Classes: 3, PerClass: 24, Size: 32}); err != nil {
		t.Fatal(err)
	}
	if _, err := gendata.Generate(photos, gendata.Options{Classes: 3, PerClass: 4, Size: 48, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	port, err := proc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	script, err := rewriteBlock(block, map[string]string{
		"DATA": data, "PHOTOS": photos, "OUT": filepath.Join(tmp, "model"), "PORT": strconv.Itoa(port),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("running the README block:\n%s", script)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	out := testWriter{t, &strings.Builder{}}
	// Its own process group: the backgrounded server goes with it even if
	// the block fails before its `kill`.
	p, err := proc.Start("README block", []string{"bash", "-euo", "pipefail", "-c", script}, os.Environ(), root, out)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
	}
	p.Stop(5 * time.Second)
	if err := p.Err(); err != nil {
		t.Fatalf("the README block failed: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the README block did not finish: %v", ctx.Err())
	}
}

var blockRE = regexp.MustCompile("(?s)<!-- readme-test:begin -->\\s*```sh\n(.*?)```\\s*<!-- readme-test:end -->")

// readmeBlock returns the shell block between the readme-test markers.
func readmeBlock(readme string) (string, error) {
	m := blockRE.FindStringSubmatch(readme)
	if m == nil {
		return "", fmt.Errorf("README.md has no ```sh block between <!-- readme-test:begin --> and <!-- readme-test:end -->")
	}
	return m[1], nil
}

// rewriteBlock sets each NAME=... line of vars to the given value and
// appends readmeSets to the train line; a missing line is an error, so
// the test cannot silently stop covering what the README says.
func rewriteBlock(block string, vars map[string]string) (string, error) {
	lines := strings.Split(block, "\n")
	found := map[string]bool{}
	train := false
	for i, l := range lines {
		for name, v := range vars {
			if strings.HasPrefix(l, name+"=") {
				lines[i] = name + "=" + strconv.Quote(v)
				found[name] = true
			}
		}
		if strings.HasPrefix(l, "bin/trainer train ") {
			lines[i] = l + readmeSets
			train = true
		}
	}
	for name := range vars {
		if !found[name] {
			return "", fmt.Errorf("the README block has no %s= line", name)
		}
	}
	if !train {
		return "", fmt.Errorf("the README block has no `bin/trainer train` line")
	}
	return strings.Join(lines, "\n"), nil
}
