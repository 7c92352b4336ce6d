package vertexlocal

import (
	"fmt"
	"path"
	"strings"

	"cloud.google.com/go/aiplatform/apiv1/aiplatformpb"
)

// term is one comparison of a list filter.
type term struct {
	not   bool
	field string // display_name, state, labels.KEY
	op    string // =, !=, :
	value string
}

// filter is a conjunction of terms.
type filter []term

// parseFilter parses the subset of the AIP-160 list filter that Vertex AI
// documents for ListCustomJobs and that Orchard uses: comparisons joined by
// AND, each optionally preceded by NOT:
//
//	labels.KEY=VALUE   labels.KEY="VALUE"   labels.KEY:*   labels.KEY!=VALUE
//	display_name="x"   display_name:"prefix_*"   state="JOB_STATE_RUNNING"   state!=...
//
// OR, parentheses and create_time comparisons are refused with an error
// rather than silently ignored.
func parseFilter(s string) (filter, error) {
	var f filter
	p := &scanner{s: s}
	for {
		p.space()
		if p.eof() {
			break
		}
		var t term
		word := p.ident()
		switch strings.ToUpper(word) {
		case "AND":
			if len(f) == 0 {
				return nil, fmt.Errorf("filter %q: AND without a left operand", s)
			}
			p.space()
			word = p.ident()
		case "OR":
			return nil, fmt.Errorf("filter %q: OR is not supported by vertexlocal", s)
		}
		if strings.ToUpper(word) == "NOT" {
			t.not = true
			p.space()
			word = p.ident()
		}
		if word == "" {
			return nil, fmt.Errorf("filter %q: expected a field at offset %d", s, p.i)
		}
		t.field = word
		p.space()
		switch {
		case p.take("!="):
			t.op = "!="
		case p.take("="):
			t.op = "="
		case p.take(":"):
			t.op = ":"
		default:
			return nil, fmt.Errorf("filter %q: expected =, != or : after %q (other comparisons are not supported)", s, word)
		}
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, fmt.Errorf("filter %q: %w", s, err)
		}
		t.value = v
		switch {
		case t.field == "display_name", t.field == "state":
		case strings.HasPrefix(t.field, "labels.") && len(t.field) > len("labels."):
		default:
			return nil, fmt.Errorf("filter %q: unsupported field %q (display_name, state, labels.KEY)", s, t.field)
		}
		if t.field == "state" {
			if _, ok := aiplatformpb.JobState_value[t.value]; !ok {
				return nil, fmt.Errorf("filter %q: unknown state %q", s, t.value)
			}
			if t.op == ":" {
				return nil, fmt.Errorf("filter %q: state supports = and != only", s)
			}
		}
		f = append(f, t)
	}
	return f, nil
}

func (f filter) match(j *aiplatformpb.CustomJob) bool {
	for _, t := range f {
		if t.eval(j) == t.not {
			return false
		}
	}
	return true
}

func (t term) eval(j *aiplatformpb.CustomJob) bool {
	var have string
	var present bool
	switch {
	case t.field == "display_name":
		have, present = j.GetDisplayName(), true
	case t.field == "state":
		have, present = j.GetState().String(), true
	default:
		have, present = j.GetLabels()[strings.TrimPrefix(t.field, "labels.")]
	}
	switch t.op {
	case "=":
		return present && have == t.value
	case "!=":
		return !present || have != t.value
	default: // ":" has, with * wildcards
		if t.value == "*" {
			return present
		}
		ok, _ := path.Match(t.value, have)
		return present && ok
	}
}

type scanner struct {
	s string
	i int
}

func (p *scanner) eof() bool { return p.i >= len(p.s) }

func (p *scanner) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *scanner) take(tok string) bool {
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *scanner) ident() string {
	start := p.i
	for p.i < len(p.s) {
		c := p.s[p.i]
		if c == '_' || c == '.' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') {
			p.i++
			continue
		}
		break
	}
	return p.s[start:p.i]
}

func (p *scanner) value() (string, error) {
	if p.take(`"`) {
		var b strings.Builder
		for p.i < len(p.s) {
			c := p.s[p.i]
			p.i++
			switch c {
			case '\\':
				if p.i < len(p.s) {
					b.WriteByte(p.s[p.i])
					p.i++
				}
			case '"':
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", fmt.Errorf("unterminated quoted value")
	}
	start := p.i
	for p.i < len(p.s) && p.s[p.i] != ' ' && p.s[p.i] != '\t' && p.s[p.i] != ')' && p.s[p.i] != '(' {
		p.i++
	}
	if p.i == start {
		return "", fmt.Errorf("expected a value at offset %d", start)
	}
	return p.s[start:p.i], nil
}
