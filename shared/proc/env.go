package proc

import (
	"os"
	"strings"
)

// Env returns an environment for a child: this process's, minus the
// variables whose KEY=VALUE form starts with one of dropPrefixes, plus
// extra. Dropping comes first, so that a developer's shell cannot override
// or confuse what the owner sets (say, an emulator host variable pointing
// somewhere else): a prefix ending in "=" drops one variable, a shorter one
// a family (FAKE_GCS_).
func Env(dropPrefixes []string, extra ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, p := range dropPrefixes {
			if strings.HasPrefix(kv, p) {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
