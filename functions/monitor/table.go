package monitor

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	mon "github.com/orchard-mlops/orchard/shared/monitor"
)

// Column is one report in a side-by-side table, under a title.
type Column struct {
	Title  string
	Report *mon.Report
	URI    string // the report's report.json
}

// Columns are a summary's reports as table columns titled by version.
func (s *Summary) Columns(prefix string) []Column {
	var out []Column
	for i, r := range s.Reports {
		out = append(out, Column{Title: strings.TrimSpace(prefix + " " + r.Model + " " + r.Version), Report: r, URI: s.URIs[i]})
	}
	return out
}

// WriteTable prints reports side by side, one row per figure: counts, each
// feature's divergence (marked "!" where it alerts), the OOD share, live
// accuracy and the alerts, so windows can be compared at a glance.
func WriteTable(w io.Writer, cols []Column) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(name string, cell func(r *mon.Report) string) {
		fmt.Fprint(tw, name)
		for _, c := range cols {
			fmt.Fprint(tw, "\t"+cell(c.Report))
		}
		fmt.Fprintln(tw)
	}
	fmt.Fprint(tw, "")
	for _, c := range cols {
		fmt.Fprint(tw, "\t"+c.Title)
	}
	fmt.Fprintln(tw)
	row("window", func(r *mon.Report) string {
		return r.WindowStart.UTC().Format("15:04:05") + "-" + r.WindowEnd.UTC().Format("15:04:05")
	})
	row("predictions", func(r *mon.Report) string { return fmt.Sprint(r.Predictions) })
	for _, f := range append(mon.NumericFeatures(), mon.Labels, mon.Format) {
		row(f, func(r *mon.Report) string {
			for _, d := range r.Drift {
				if d.Feature == f {
					return fmt.Sprintf("%s %.3f%s", d.Measure, d.Value, mark(d.Alert))
				}
			}
			return "-"
		})
	}
	row("out of distribution", func(r *mon.Report) string {
		return fmt.Sprintf("%.1f %%%s", 100*r.OODShare, mark(hasAlert(r, mon.OODShare)))
	})
	row("live accuracy", func(r *mon.Report) string {
		if r.Live == nil {
			return "-"
		}
		return fmt.Sprintf("%.1f %% (%d/%d)%s", 100*r.Live.Accuracy, r.Live.Correct, r.Live.Labelled, mark(r.Live.Alert))
	})
	row("alerts", func(r *mon.Report) string {
		if len(r.Alerts) == 0 {
			return "none"
		}
		var names []string
		for _, a := range r.Alerts {
			names = append(names, a.Feature)
		}
		return strings.Join(names, ",")
	})
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range cols {
		if c.URI != "" {
			fmt.Fprintf(w, "  %s: %s (and report.html beside it)\n", c.Title, c.URI)
		}
	}
	return nil
}

func mark(alert bool) string {
	if alert {
		return " !"
	}
	return ""
}

func hasAlert(r *mon.Report, feature string) bool {
	for _, a := range r.Alerts {
		if a.Feature == feature {
			return true
		}
	}
	return false
}
