package resize

/*
#include "bridge.h"
*/
import "C"

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// job carries one output through the pipeline steps.
type job struct {
	src  []byte
	hdr  header
	o    Options
	lim  Limits
	plan plan
	img  vimage
	// animated is true when every frame of a multi-frame source is kept.
	animated bool
}

type step struct {
	name string
	run  func(*job) error
}

// processSteps is the pipeline's table of contents after decoding: each step
// is a small method below; the deadline is checked between steps.
var processSteps = []step{
	{"frame", (*job).frame},   // cut or pad every frame to the box by gravity
	{"colour", (*job).colour}, // 8-bit sRGB, embedded ICC profiles applied
	{"alpha", (*job).alpha},   // flatten onto Background for formats without alpha
	{"strip", (*job).strip},   // drop EXIF (GPS), XMP, IPTC, ICC unless KeepMetadata
}

// Process decodes src with shrink-on-load, fits it to o and encodes it.
func Process(ctx context.Context, src []byte, o Options, lim Limits) (Result, error) {
	j, err := prepare(src, o, lim)
	if err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("resize: %w", err)
	}
	var pin runtime.Pinner // libvips reads src lazily until the last image is freed
	pin.Pin(&src[0])
	defer pin.Unpin()
	defer j.img.close()
	if err := j.decode(); err != nil {
		return Result{}, err
	}
	return j.finish(ctx)
}

// prepare probes src and plans the geometry for o.
func prepare(src []byte, o Options, lim Limits) (*job, error) {
	hdr, err := probe(src, lim)
	if err != nil {
		return nil, err
	}
	return planJob(src, hdr, o, lim)
}

func planJob(src []byte, hdr header, o Options, lim Limits) (*job, error) {
	o, err := o.normalize(hdr.Info)
	if err != nil {
		return nil, err
	}
	j := &job{src: src, hdr: hdr, o: o, lim: lim}
	j.animated = o.Animated && hdr.Pages > 1 && (hdr.Format == FormatGIF || hdr.Format == FormatWebP)
	if j.animated {
		if hdr.Pages > lim.MaxFrames {
			return nil, fmt.Errorf("%w: %d frames > limit %d", ErrTooLarge, hdr.Pages, lim.MaxFrames)
		}
		if px := int64(hdr.Width) * int64(hdr.Height) * int64(hdr.Pages); px > lim.MaxInputPixels {
			return nil, fmt.Errorf("%w: %d frames of %dx%d > %d pixels", ErrTooLarge, hdr.Pages, hdr.Width, hdr.Height, lim.MaxInputPixels)
		}
	}
	if j.plan, err = makePlan(hdr.Width, hdr.Height, o, j.animated); err != nil {
		return nil, err
	}
	if px := j.plan.outputPixels(); px > lim.MaxOutputPixels {
		return nil, fmt.Errorf("%w: output %dx%d > %d pixels", ErrTooLarge, j.plan.boxW, j.plan.boxH, lim.MaxOutputPixels)
	}
	if px := int64(j.plan.resizeW) * int64(j.plan.resizeH); px > 4*lim.MaxOutputPixels {
		return nil, fmt.Errorf("%w: intermediate %dx%d too large", ErrTooLarge, j.plan.resizeW, j.plan.resizeH)
	}
	return j, nil
}

// loadOptions are the libvips loader options for this job: fail on damaged
// data instead of returning grey blocks, and all frames when animating.
func (j *job) loadOptions() string {
	opts := "fail_on=error"
	if j.animated {
		opts += fmt.Sprintf(",n=%d", j.hdr.Pages)
	}
	return opts
}

// decode produces the resized frame(s) in display orientation. A still
// image is shrunk by the largest power of two that keeps the detail the plan
// needs — inside the decoder for JPEG (DCT scaling) and WebP, by a box filter
// as rows arrive for the others — and then resized once with lanczos3.
// Animations go through vips_thumbnail_buffer, which handles pages.
func (j *job) decode() error {
	if !j.animated {
		f := loadShrink(j.plan.scale)
		im, err := loadShrunk(context.Background(), j.src, j.hdr, f, false)
		if err != nil {
			return err
		}
		defer im.close()
		return j.resizeFrom(im.p)
	}
	opts := C.CString(j.loadOptions())
	defer C.free(unsafe.Pointer(opts))
	var out *C.VipsImage
	p := j.plan
	if C.rs_thumbnail_buffer(unsafe.Pointer(&j.src[0]), C.size_t(len(j.src)), &out,
		C.int(p.resizeW), C.int(p.resizeH), C.VIPS_INTERESTING_NONE, C.VIPS_SIZE_FORCE, opts) != 0 {
		return fmt.Errorf("%w: decode %s: %w", ErrCorrupt, j.hdr.Format, vipsError())
	}
	j.img.p = out
	return nil
}

// loadShrunk opens src for a sequential decode, shrunk by shrink (a power of
// two): inside the decoder for JPEG and WebP, by a 2^n box filter for the
// others. With memory set the pixels are decoded now, into RAM, for Variants
// to reuse, and ctx can stop that decode; otherwise decoding is lazy.
func loadShrunk(ctx context.Context, src []byte, hdr header, shrink int, memory bool) (vimage, error) {
	opts := "fail_on=error"
	boxShrink := 1
	if shrink > 1 {
		switch hdr.Format {
		case FormatJPEG:
			opts += fmt.Sprintf(",shrink=%d", shrink)
		case FormatWebP:
			opts += fmt.Sprintf(",scale=%g", 1/float64(shrink))
		default:
			boxShrink = shrink
		}
	}
	copts := C.CString(opts)
	defer C.free(unsafe.Pointer(copts))
	var im vimage
	if C.rs_load(unsafe.Pointer(&src[0]), C.size_t(len(src)), copts, &im.p) != 0 {
		return vimage{}, fmt.Errorf("%w: decode %s: %w", ErrCorrupt, hdr.Format, vipsError())
	}
	var out *C.VipsImage
	if boxShrink > 1 {
		if C.rs_shrink(im.p, &out, C.int(boxShrink)) != 0 {
			im.close()
			return vimage{}, fmt.Errorf("%w: shrink %s: %w", ErrCorrupt, hdr.Format, vipsError())
		}
		im.replace(out)
	}
	if memory {
		rc := evaluate(ctx, im.p, func() C.int { return C.rs_copy_memory(im.p, &out) })
		if rc != 0 {
			im.close()
			err := vipsError()
			if ctx.Err() != nil {
				return vimage{}, fmt.Errorf("resize decode %s: %w", hdr.Format, ctx.Err())
			}
			return vimage{}, fmt.Errorf("%w: decode %s: %w", ErrCorrupt, hdr.Format, err)
		}
		im.replace(out)
	}
	return im, nil
}

// resizeFrom scales in (stored orientation, any size) to the plan's resize
// size and applies the EXIF orientation. Rotation runs on the small result,
// from memory, since it reads its input out of order.
func (j *job) resizeFrom(in *C.VipsImage) error {
	tw, th := j.plan.resizeW, j.plan.resizeH
	o := j.hdr.orientation
	if o >= 5 && o <= 8 {
		tw, th = th, tw
	}
	iw, ih := int(in.Xsize), int(in.Ysize)
	var out *C.VipsImage
	if j.o.Format == FormatJPEG && C.vips_image_hasalpha(in) != 0 {
		// JPEG drops alpha anyway: flatten first so the resize runs on
		// 8-bit pixels instead of premultiplied floats.
		bg := j.o.Background
		if C.rs_flatten(in, &out, C.double(bg[0]), C.double(bg[1]), C.double(bg[2])) != 0 {
			return fmt.Errorf("%w: flatten: %w", ErrCorrupt, vipsError())
		}
		defer C.rs_unref(out)
		in = out
	}
	if p := j.plan; p.post == postExtract && (o <= 1 || o > 8) {
		// Cut the cover crop out of the source before resizing, mapped
		// back through the scale: the resize then computes only pixels
		// that are kept. (A crop after the resize would not save that
		// work: libvips caches whole rows of sequentially loaded images.)
		hs, vs := float64(tw)/float64(iw), float64(th)/float64(ih)
		cx := int(float64(offset(tw, p.boxW, p.weight[0])) / hs)
		cy := int(float64(offset(th, p.boxH, p.weight[1])) / vs)
		cw := min(iw-cx, max(1, int(math.Round(float64(p.boxW)/hs))))
		ch := min(ih-cy, max(1, int(math.Round(float64(p.boxH)/vs))))
		if C.rs_extract_area(in, &out, C.int(cx), C.int(cy), C.int(cw), C.int(ch)) != 0 {
			return fmt.Errorf("%w: crop: %w", ErrCorrupt, vipsError())
		}
		defer C.rs_unref(out)
		in, iw, ih, tw, th = out, cw, ch, p.boxW, p.boxH
	}
	if C.rs_resize(in, &out, C.double(float64(tw)/float64(iw)), C.double(float64(th)/float64(ih))) != 0 {
		return fmt.Errorf("%w: resize: %w", ErrCorrupt, vipsError())
	}
	j.img.p = out
	// vips_resize rounds each axis; pin the size the plan promised.
	if j.img.width() != tw || j.img.height() != th {
		if C.rs_exact(j.img.p, &out, C.int(tw), C.int(th)) != 0 {
			return fmt.Errorf("resize: %w", vipsError())
		}
		j.img.replace(out)
	}
	if o > 1 && o <= 8 {
		if C.rs_copy_memory(j.img.p, &out) != 0 {
			return fmt.Errorf("%w: decode: %w", ErrCorrupt, vipsError())
		}
		j.img.replace(out)
		if C.rs_autorot(j.img.p, &out) != 0 {
			return fmt.Errorf("autorotate: %w", vipsError())
		}
		j.img.replace(out)
	}
	return nil
}

// finish runs the steps after decoding and encodes.
func (j *job) finish(ctx context.Context) (Result, error) {
	for _, s := range processSteps {
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("resize before %s: %w", s.name, err)
		}
		if err := s.run(j); err != nil {
			return Result{}, fmt.Errorf("resize %s: %w", s.name, err)
		}
	}
	return j.encode(ctx)
}

// frame cuts (cover with a compass gravity) or pads (contain) each frame to
// the box. Frames of an animation are handled one by one and joined again.
func (j *job) frame() error {
	p := j.plan
	if p.post == postNone {
		return nil
	}
	n := j.img.pages()
	if !j.animated {
		n = 1
	}
	fw, fh := j.img.width(), j.img.height()/n
	if fw == p.boxW && fh == p.boxH {
		return nil
	}
	one := func(in *C.VipsImage, out **C.VipsImage) C.int {
		switch p.post {
		case postExtract:
			bw, bh := min(p.boxW, fw), min(p.boxH, fh)
			return C.rs_extract_area(in, out, C.int(offset(fw, bw, p.weight[0])),
				C.int(offset(fh, bh, p.weight[1])), C.int(bw), C.int(bh))
		case postSmart:
			return C.rs_smartcrop(in, out, C.int(min(p.boxW, fw)), C.int(min(p.boxH, fh)))
		default:
			bg := j.o.Background
			// Pad with transparency when the output can carry it.
			transparent := j.img.hasAlpha() && j.o.Format != FormatJPEG
			return C.rs_embed(in, out, C.int(offset(p.boxW, fw, p.weight[0])),
				C.int(offset(p.boxH, fh, p.weight[1])), C.int(p.boxW), C.int(p.boxH),
				C.double(bg[0]), C.double(bg[1]), C.double(bg[2]), cbool(transparent))
		}
	}
	if n == 1 {
		var out *C.VipsImage
		if one(j.img.p, &out) != 0 {
			return vipsError()
		}
		j.img.replace(out)
		return nil
	}
	return j.perFrame(n, fh, one)
}

// perFrame applies fn to each of n frames of height fh and stacks the results.
func (j *job) perFrame(n, fh int, fn func(in *C.VipsImage, out **C.VipsImage) C.int) error {
	frames := make([]*C.VipsImage, 0, n)
	defer func() {
		for _, f := range frames {
			C.rs_unref(f)
		}
	}()
	for i := 0; i < n; i++ {
		var page, out *C.VipsImage
		if C.rs_extract_area(j.img.p, &page, 0, C.int(i*fh), C.int(j.img.width()), C.int(fh)) != 0 {
			return vipsError()
		}
		rc := fn(page, &out)
		C.rs_unref(page)
		if rc != 0 {
			return vipsError()
		}
		frames = append(frames, out)
	}
	var joined, out *C.VipsImage
	arr := (**C.VipsImage)(C.malloc(C.size_t(n) * C.size_t(unsafe.Sizeof(frames[0]))))
	defer C.free(unsafe.Pointer(arr))
	copy(unsafe.Slice(arr, n), frames)
	if C.rs_arrayjoin(arr, C.int(n), &joined) != 0 {
		return vipsError()
	}
	rc := C.rs_set_page_height(joined, &out, C.int(frames[0].Ysize))
	C.rs_unref(joined)
	if rc != 0 {
		return vipsError()
	}
	j.img.replace(out)
	return nil
}

// colour converts to 8-bit sRGB. An embedded profile that is not sRGB is
// applied here, after the resize, so the transform runs on output pixels only.
func (j *job) colour() error {
	icc := false
	var data unsafe.Pointer
	var n C.size_t
	if C.rs_has_icc(j.img.p, (*unsafe.Pointer)(unsafe.Pointer(&data)), &n) != 0 && n > 0 {
		icc = !isSRGBProfile(C.GoBytes(data, C.int(min(n, 1<<20))))
	}
	var out *C.VipsImage
	if C.rs_to_srgb(j.img.p, &out, cbool(icc)) != 0 {
		return vipsError()
	}
	j.img.replace(out)
	return nil
}

// alpha flattens transparency onto Background for JPEG, which has none.
func (j *job) alpha() error {
	if j.o.Format != FormatJPEG || !j.img.hasAlpha() {
		return nil
	}
	bg := j.o.Background
	var out *C.VipsImage
	if C.rs_flatten(j.img.p, &out, C.double(bg[0]), C.double(bg[1]), C.double(bg[2])) != 0 {
		return vipsError()
	}
	j.img.replace(out)
	return nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// strip removes metadata unless the caller keeps it. The colour step has
// already made the pixels sRGB, so dropping the ICC profile is lossless.
func (j *job) strip() error {
	if j.o.KeepMetadata {
		return nil
	}
	var out *C.VipsImage
	if C.rs_strip(j.img.p, &out) != 0 {
		return vipsError()
	}
	j.img.replace(out)
	return nil
}
