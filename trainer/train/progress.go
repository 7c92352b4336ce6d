package train

import (
	"fmt"
	"io"
	"strings"
)

// progressBar draws one line per epoch on a terminal; it is a no-op when w
// is nil (the CLI passes nil when stdout is not a terminal and logs
// structured lines instead).
type progressBar struct {
	w             io.Writer
	epoch, epochs int
	steps         int
	last          int
}

func newProgressBar(w io.Writer, epoch, epochs, steps int) *progressBar {
	return &progressBar{w: w, epoch: epoch, epochs: epochs, steps: steps, last: -1}
}

func (p *progressBar) update(step int, loss, acc, ips float64) {
	if p.w == nil {
		return
	}
	const width = 30
	filled := width * step / max(1, p.steps)
	if filled == p.last && step != p.steps {
		return
	}
	p.last = filled
	fmt.Fprintf(p.w, "\repoch %d/%d [%s%s] %3d%% loss %.4f acc %.4f %4.0f img/s",
		p.epoch, p.epochs, strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		100*step/max(1, p.steps), loss, acc, ips)
}

func (p *progressBar) done() {
	if p.w != nil {
		fmt.Fprintln(p.w)
	}
}
