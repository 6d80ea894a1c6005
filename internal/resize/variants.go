package resize

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"unsafe"
)

// Variants renders every option from one decode: the source is decoded once,
// shrunk on load only as far as the largest variant allows, kept in memory,
// and each variant is resized from that copy. This skips N-1 entropy decodes,
// the dominant cost for photos.
//
// Options that keep an animation are rendered by Process on their own; the
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
	scale := 0.0
	for i, o := range opts {
		if jobs[i], err = planJob(src, hdr, o, lim); err != nil {
			return nil, fmt.Errorf("variant %d: %w", i, err)
		}
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

	var shared vimage
	defer shared.close()
	if scale > 0 {
		if shared, err = decodeShared(src, hdr, scale); err != nil {
			return nil, err
		}
	}
	out := make([]Result, len(jobs))
	for i, j := range jobs {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("resize variant %d: %w", i, err)
		}
		if j.animated {
			err = j.decode()
		} else {
			err = j.derive(&shared)
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

// decodeShared decodes the first frame once, with the largest shrink-on-load
// factor that still leaves at least scale×source pixels, autorotated, into
// memory so every variant reads it randomly without decoding again.
func decodeShared(src []byte, hdr header, scale float64) (vimage, error) {
	opts := "fail_on=error"
	if f := loadShrink(scale); f > 1 {
		switch hdr.Format {
		case FormatJPEG:
			opts += fmt.Sprintf(",shrink=%d", f)
		case FormatWebP:
			opts += fmt.Sprintf(",scale=%g", 1/float64(f))
		}
	}
	copts := C.CString(opts)
	defer C.free(unsafe.Pointer(copts))
	var im vimage
	var out *C.VipsImage
	if C.rs_load(unsafe.Pointer(&src[0]), C.size_t(len(src)), copts, &out) != 0 {
		return vimage{}, fmt.Errorf("%w: decode %s: %w", ErrCorrupt, hdr.Format, vipsError())
	}
	im.p = out
	// Decode sequentially into memory first: rotation reads out of order.
	if C.rs_copy_memory(im.p, &out) != 0 {
		im.close()
		return vimage{}, fmt.Errorf("%w: decode %s: %w", ErrCorrupt, hdr.Format, vipsError())
	}
	im.replace(out)
	if hdr.orientation > 1 && hdr.orientation <= 8 {
		if C.rs_autorot(im.p, &out) != 0 {
			im.close()
			return vimage{}, fmt.Errorf("%w: autorotate: %w", ErrCorrupt, vipsError())
		}
		im.replace(out)
		if C.rs_copy_memory(im.p, &out) != 0 {
			im.close()
			return vimage{}, fmt.Errorf("resize: autorotate: %w", vipsError())
		}
		im.replace(out)
	}
	return im, nil
}

// loadShrink is the largest power-of-two JPEG/WebP shrink (up to 8) that
// keeps the decoded image at least scale times the source.
func loadShrink(scale float64) int {
	f := 1
	for f < 8 && 1/float64(f*2) >= scale {
		f *= 2
	}
	return f
}

// derive resizes this job's output from the shared decoded image.
func (j *job) derive(shared *vimage) error {
	var out *C.VipsImage
	p := j.plan
	if C.rs_thumbnail_image(shared.p, &out, C.int(p.thumbW), C.int(p.thumbH),
		vipsCrop(p.crop), vipsSize(p.size)) != 0 {
		return fmt.Errorf("resize: %w", vipsError())
	}
	j.img.p = out
	return nil
}
