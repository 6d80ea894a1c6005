package resize

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
)

// Variants renders every option from one decode: the source is decoded once,
// shrunk on load only as far as the largest variant allows, kept in memory,
// and each variant is resized from the nearest level of a box-shrunk pyramid
// of that copy. This skips N-1 entropy decodes, the dominant cost for photos.
//
// Identical options share one Result's Data. Options that keep an animation are rendered by Process on their own; the
// shared decode holds the first frame only.
func Variants(ctx context.Context, src []byte, opts []Options, lim Limits) ([]Result, error) {
	if len(opts) == 0 {
		return nil, fmt.Errorf("%w: no variants", ErrInvalidOptions)
	}
	hdr, err := probe(src, lim)
	if err != nil {
		return nil, err
	}
	jobs := make([]*job, len(opts))
	// Social networks share sizes (three 1080×1920 stories): render each
	// distinct normalized option once and hand its bytes to every copy.
	same := make([]int, len(opts))
	seen := make(map[Options]int, len(opts))
	scale := 0.0
	for i, o := range opts {
		if jobs[i], err = planJob(src, hdr, o, lim); err != nil {
			return nil, fmt.Errorf("variant %d: %w", i, err)
		}
		same[i] = i
		if k, ok := seen[jobs[i].o]; ok {
			same[i] = k
			continue
		}
		seen[jobs[i].o] = i
		if !jobs[i].animated {
			scale = max(scale, jobs[i].plan.scale)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("resize: %w", err)
	}
	var pin runtime.Pinner
	pin.Pin(&src[0])
	defer pin.Unpin()

	lv := levels{src: src, hdr: hdr}
	defer lv.close()
	if scale > 0 {
		if err := lv.decode(ctx, loadShrink(scale)); err != nil {
			return nil, err
		}
	}
	out := make([]Result, len(jobs))
	for i, j := range jobs {
		if same[i] != i {
			out[i] = out[same[i]] // shares Data: results are read-only
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("resize variant %d: %w", i, err)
		}
		if j.animated {
			err = j.decode()
		} else {
			var base *C.VipsImage
			if base, err = lv.at(loadShrink(j.plan.scale)); err == nil {
				err = j.resizeFrom(base)
			}
		}
		if err == nil {
			out[i], err = j.finish(ctx)
		}
		j.img.close()
		if err != nil {
			return nil, fmt.Errorf("variant %d: %w", i, err)
		}
	}
	return out, nil
}

// levels is a pyramid of the decoded source in memory: the one decode at
// the first shrink, then 2×2 box-shrunk copies made on demand, so every
// variant resizes from the smallest level that still has its detail, as a
// shrink-on-load decode would.
type levels struct {
	src    []byte
	hdr    header
	first  int // shrink of the decode
	images map[int]*vimage
}

func (l *levels) decode(ctx context.Context, shrink int) error {
	im, err := loadShrunk(ctx, l.src, l.hdr, shrink, true)
	if err != nil {
		return err
	}
	l.first = shrink
	l.images = map[int]*vimage{shrink: &im}
	return nil
}

// at returns the level for a wanted shrink, making it from the one above.
func (l *levels) at(shrink int) (*C.VipsImage, error) {
	shrink = max(shrink, l.first)
	if im, ok := l.images[shrink]; ok {
		return im.p, nil
	}
	up, err := l.at(shrink / 2)
	if err != nil {
		return nil, err
	}
	var out *C.VipsImage
	if C.rs_halve(up, &out) != 0 {
		return nil, fmt.Errorf("resize: shrink: %w", vipsError())
	}
	l.images[shrink] = &vimage{p: out}
	return out, nil
}

func (l *levels) close() {
	for _, im := range l.images {
		im.close()
	}
}
