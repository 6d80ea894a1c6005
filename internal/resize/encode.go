package resize

/*
#include "bridge.h"
*/
import "C"

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"unsafe"
)

type saveFormat struct {
	code   C.int
	effort int // speed/size trade-off where the encoder has one
}

var saveFormats = map[Format]saveFormat{
	FormatJPEG: {C.RS_JPEG, 0},
	FormatPNG:  {C.RS_PNG, 0},
	FormatWebP: {C.RS_WEBP, 4},
	// AV1 at effort 2: the default (4) costs several times the CPU for a few
	// per cent of bytes, too slow for an interactive service.
	FormatAVIF: {C.RS_AVIF, 2},
	FormatGIF:  {C.RS_GIF, 0},
}

// encode evaluates the whole pipeline (libvips is lazy: decoding and
// resizing happen here) and compresses it. A context deadline kills the
// evaluation inside libvips instead of waiting for it to finish.
func (j *job) encode(ctx context.Context) (Result, error) {
	sf := saveFormats[j.o.Format]
	img := j.img.p
	var buf unsafe.Pointer
	var n C.size_t
	rc := evaluate(ctx, img, func() C.int {
		return C.rs_save(img, sf.code, C.int(j.o.Quality), cbool(!j.o.KeepMetadata), C.int(sf.effort), &buf, &n)
	})
	if rc != 0 {
		err := vipsError()
		if ctx.Err() != nil {
			return Result{}, fmt.Errorf("resize encode %s: %w", j.o.Format, ctx.Err())
		}
		// Decoding is lazy, so a damaged file usually fails here.
		return Result{}, fmt.Errorf("%w: encode %s: %w", ErrCorrupt, j.o.Format, err)
	}
	defer C.rs_free(buf)
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("resize encode %s: %w", j.o.Format, err)
	}
	n0 := j.img.pages()
	if !j.animated {
		n0 = 1
	}
	return Result{
		Data:   C.GoBytes(buf, C.int(n)),
		Format: j.o.Format,
		Width:  j.img.width(),
		Height: j.img.height() / n0,
	}, nil
}

// evaluate runs fn, which computes img's pixels, and sets libvips' kill flag
// on img if ctx ends first, so the evaluation stops within a few scanlines.
func evaluate(ctx context.Context, img *C.VipsImage, fn func() C.int) C.int {
	var mu sync.Mutex
	done := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !done {
			C.vips_image_set_kill(img, 1)
		}
	})
	rc := fn()
	stop()
	mu.Lock()
	done = true // img may be freed after this; the watcher must not touch it
	mu.Unlock()
	return rc
}

// isSRGBProfile reports whether an ICC profile describes sRGB, so the common
// case skips a colour transform that would change nothing.
func isSRGBProfile(p []byte) bool {
	if len(p) < 132 {
		return false
	}
	count := binary.BigEndian.Uint32(p[128:132])
	for i := uint32(0); i < count && i < 100; i++ {
		e := 132 + int(i)*12
		if e+12 > len(p) {
			return false
		}
		if string(p[e:e+4]) != "desc" {
			continue
		}
		off := int(binary.BigEndian.Uint32(p[e+4 : e+8]))
		size := int(binary.BigEndian.Uint32(p[e+8 : e+12]))
		if off < 0 || size < 0 || off+size > len(p) || off+size < off {
			return false
		}
		d := p[off : off+size]
		// v2 'desc' holds ASCII; v4 'mluc' holds UTF-16BE.
		return bytes.Contains(d, []byte("sRGB")) || bytes.Contains(d, []byte("\x00s\x00R\x00G\x00B"))
	}
	return false
}
