//go:build xla

package train

// Built with -tags xla, the trainer also links GoMLX's XLA backend, for
// GPU training jobs on images that carry the PJRT plugin; GOMLX_BACKEND=xla
// (or xla:cuda) selects it. The default build stays pure Go, so nothing XLA
// is needed to build or run the trainer here.
import _ "github.com/gomlx/go-xla/compute/xla"
