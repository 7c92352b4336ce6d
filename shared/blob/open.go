package blob

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

// Opener opens stores by URI (gs://bucket[/prefix], file:///dir or a plain
// local path). Its GCS stores share one client, so a process makes one
// Opener (or passes its client to NewOpener) and hands it down. A nil
// *Opener opens local paths only.
type Opener struct {
	once    sync.Once
	newFunc func(context.Context) (*storage.Client, error)
	client  *storage.Client
	err     error
	owned   bool // made here, so Close closes it
}

// NewOpener returns an opener whose GCS stores use c, which the caller
// keeps and closes.
func NewOpener(c *storage.Client) *Opener {
	o := &Opener{client: c}
	o.once.Do(func() {}) // the client is already there
	return o
}

// LazyOpener returns an opener that makes its client on the first gs:// URI
// (storage.NewClient with opts, which honours STORAGE_EMULATOR_HOST), so a
// run over local files needs no credentials. Close closes the client.
func LazyOpener(opts ...option.ClientOption) *Opener {
	return &Opener{owned: true, newFunc: func(ctx context.Context) (*storage.Client, error) {
		// The client outlives the caller's context.
		return storage.NewClient(context.WithoutCancel(ctx), opts...)
	}}
}

// Client returns the opener's storage client, making it if need be.
func (o *Opener) Client(ctx context.Context) (*storage.Client, error) {
	if o == nil {
		return nil, errors.New("blob: no storage client (a nil Opener opens local paths only)")
	}
	o.once.Do(func() {
		o.client, o.err = o.newFunc(ctx)
		if o.err != nil {
			o.err = fmt.Errorf("blob: creating the storage client: %w", o.err)
		}
	})
	if o.err == nil && o.client == nil {
		return nil, errors.New("blob: no storage client given to NewOpener")
	}
	return o.client, o.err
}

// Open returns the store uri names; local directories are created.
func (o *Opener) Open(ctx context.Context, uri string) (Store, error) {
	bucket, prefix, isGCS, err := Parse(uri)
	if err != nil {
		return nil, err
	}
	if !isGCS {
		return NewDir(prefix)
	}
	c, err := o.Client(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", uri, err)
	}
	return NewGCS(c, bucket, prefix), nil
}

// Close closes a client the opener made; a client given to NewOpener is
// the caller's to close.
func (o *Opener) Close() error {
	if o == nil || !o.owned {
		return nil
	}
	o.once.Do(func() {}) // never make a client just to close it
	if o.client == nil {
		return nil
	}
	return o.client.Close()
}
