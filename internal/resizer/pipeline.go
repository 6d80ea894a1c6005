package resizer

import (
	"context"

	"github.com/shipteam/ship/internal/resize"
)

// Pipeline is the image work the service needs; Libvips is the real one.
// Tests wrap it (to hold a worker, say), never replace the pixels.
type Pipeline interface {
	Probe(src []byte, lim resize.Limits) (resize.Info, error)
	Process(ctx context.Context, src []byte, o resize.Options, lim resize.Limits) (resize.Result, error)
	Variants(ctx context.Context, src []byte, opts []resize.Options, lim resize.Limits) ([]resize.Result, error)
}

// Libvips is the Pipeline of package resize. resize.Startup must have been
// called.
type Libvips struct{}

func (Libvips) Probe(src []byte, lim resize.Limits) (resize.Info, error) {
	return resize.Probe(src, lim)
}

func (Libvips) Process(ctx context.Context, src []byte, o resize.Options, lim resize.Limits) (resize.Result, error) {
	return resize.Process(ctx, src, o, lim)
}

func (Libvips) Variants(ctx context.Context, src []byte, opts []resize.Options, lim resize.Limits) ([]resize.Result, error) {
	return resize.Variants(ctx, src, opts, lim)
}
