package env

import (
	"strings"
	"testing"
	"time"
)

func reader(kv map[string]string) *Reader { return New(func(k string) string { return kv[k] }) }

func TestValuesAndDefaults(t *testing.T) {
	r := reader(map[string]string{
		"S": "  text ", "L": " a, ,b ,", "I": " 42 ", "B": "true",
		"SEC": "30", "GO": "1m30s", "MS": "250",
	})
	if got := r.String("S", "d"); got != "text" {
		t.Errorf("String = %q", got)
	}
	if got := r.String("UNSET", "d"); got != "d" {
		t.Errorf("String of an unset variable = %q, want the default", got)
	}
	if got := strings.Join(r.List("L"), "|"); got != "a|b" {
		t.Errorf("List = %q", got)
	}
	if r.List("UNSET") != nil {
		t.Error("List of an unset variable is not nil")
	}
	if got := r.Int("I", 1, 0); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("UNSET", 7, 0); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if !r.Bool("B", false) || r.Bool("UNSET", false) {
		t.Error("Bool")
	}
	for key, want := range map[string]time.Duration{"SEC": 30 * time.Second, "GO": 90 * time.Second, "UNSET": time.Hour} {
		if got := r.Duration(key, time.Hour, time.Second, 0); got != want {
			t.Errorf("Duration(%s) = %v, want %v", key, got, want)
		}
	}
	if got := r.Duration("MS", 0, time.Millisecond, 0); got != 250*time.Millisecond {
		t.Errorf("Duration in milliseconds = %v", got)
	}
	if err := r.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}
}

func TestErrorsAreCollectedOnOneLine(t *testing.T) {
	r := reader(map[string]string{"I": "x", "LOW": "0", "B": "maybe", "D": "soon", "NEG": "-1s"})
	if got := r.Int("I", 5, 0); got != 5 {
		t.Errorf("malformed Int = %d, want the default", got)
	}
	r.Int("LOW", 5, 1)
	r.Bool("B", false)
	r.Duration("D", time.Second, time.Second, 0)
	r.Duration("NEG", time.Second, time.Second, time.Nanosecond)
	r.Failf("own check %d", 1)
	err := r.Err()
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{`I="x"`, `LOW="0"`, `B="maybe"`, `D="soon"`, `NEG="-1s"`, "own check 1"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %s", msg, want)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
}
