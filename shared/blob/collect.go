package blob

import (
	"context"
	"fmt"
)

// Limits bound a Collect: what to keep and when to stop.
type Limits struct {
	// Keep, if set, picks the objects to return; the others are skipped.
	Keep func(Attrs) bool
	// Max: more kept objects than this is ErrTooMany (0: no limit).
	Max int
	// Scan: more listed objects than this is ErrTooMany, kept or not, so a
	// bucket of non-matching objects is not listed to its end (0: no limit).
	Scan int
}

// Collect lists what opts select into a slice, in key order, stopping with
// ErrTooMany as soon as a limit is passed rather than listing everything
// first. For listings too large to hold, range over Store.List instead.
func Collect(ctx context.Context, st Store, opts ListOptions, lim Limits) ([]Attrs, error) {
	var out []Attrs
	scanned := 0
	for a, err := range st.List(ctx, opts) {
		if err != nil {
			return nil, err
		}
		if scanned++; lim.Scan > 0 && scanned > lim.Scan {
			return nil, fmt.Errorf("%s holds more than %d objects: %w", st.URI(opts.Prefix), lim.Scan, ErrTooMany)
		}
		if lim.Keep != nil && !lim.Keep(a) {
			continue
		}
		if lim.Max > 0 && len(out) == lim.Max {
			return nil, fmt.Errorf("%s holds more than %d matching objects: %w", st.URI(opts.Prefix), lim.Max, ErrTooMany)
		}
		out = append(out, a)
	}
	return out, nil
}
