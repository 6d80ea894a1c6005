package resize

import (
	"fmt"
	"math"
)

// gravityWeights place a crop window or a padded image: 0 = left/top,
// 0.5 = centre, 1 = right/bottom.
var gravityWeights = map[Gravity][2]float64{
	GravityCentre:    {0.5, 0.5},
	GravityNorth:     {0.5, 0},
	GravityNorthEast: {1, 0},
	GravityEast:      {1, 0.5},
	GravitySouthEast: {1, 1},
	GravitySouth:     {0.5, 1},
	GravitySouthWest: {0, 1},
	GravityWest:      {0, 0.5},
	GravityNorthWest: {0, 0},
}

type postMode int

const (
	postNone    postMode = iota
	postExtract          // cut the box out of a larger frame, by gravity
	postSmart            // cut the box around the most interesting region
	postEmbed            // pad a smaller frame to the box, by gravity
)

// plan is the geometry of one output, a pure function of the source frame
// size and the options, so it is tested without libvips. All sizes are in
// display orientation (after EXIF rotation).
type plan struct {
	resizeW, resizeH int // the frame after resizing, before cut or pad
	post             postMode
	boxW, boxH       int        // the final frame
	weight           [2]float64 // gravity for post
	scale            float64    // largest source→resize scale on either axis
}

// makePlan computes the geometry for a sw×sh source frame (already oriented).
// animated disables smart crop, which would pick a region per frame.
func makePlan(sw, sh int, o Options, animated bool) (plan, error) {
	if sw <= 0 || sh <= 0 {
		return plan{}, fmt.Errorf("%w: source %dx%d", ErrCorrupt, sw, sh)
	}
	w, h := o.Width, o.Height
	fit := o.Fit
	if (w == 0) != (h == 0) && fit != FitInside {
		// One side given: scale to it keeping aspect. Rounding the other
		// side must not turn into a crop (a 10000×10 strip to width 100).
		fit = FitFill
	}
	switch {
	case w == 0 && h == 0:
		w, h = sw, sh
	case w == 0:
		w = max(1, int(math.Round(float64(sw)*float64(h)/float64(sh))))
	case h == 0:
		h = max(1, int(math.Round(float64(sh)*float64(w)/float64(sw))))
	}
	if w > MaxDimension || h > MaxDimension {
		return plan{}, fmt.Errorf("%w: derived size %dx%d > %d", ErrInvalidOptions, w, h, MaxDimension)
	}
	sx, sy := float64(w)/float64(sw), float64(h)/float64(sh)
	scaled := func(s float64, limW, limH int) (int, int) {
		return min(limW, max(1, int(math.Round(float64(sw)*s)))), min(limH, max(1, int(math.Round(float64(sh)*s))))
	}
	p := plan{resizeW: w, resizeH: h, boxW: w, boxH: h}
	p.weight = gravityWeights[o.Gravity]
	if o.Gravity == GravitySmart || o.Gravity == "" {
		p.weight = gravityWeights[GravityCentre]
	}
	switch fit {
	case FitCover, "":
		s := max(sx, sy)
		p.resizeW, p.resizeH = max(w, int(math.Round(float64(sw)*s))), max(h, int(math.Round(float64(sh)*s)))
		if p.resizeW != w || p.resizeH != h {
			p.post = postExtract
			if o.Gravity == GravitySmart && !animated {
				p.post = postSmart
			}
		}
	case FitContain:
		p.resizeW, p.resizeH = scaled(min(sx, sy), w, h)
		if p.resizeW != w || p.resizeH != h {
			p.post = postEmbed
		}
	case FitFill:
	case FitInside:
		p.resizeW, p.resizeH = scaled(min(sx, sy, 1), w, h)
		p.boxW, p.boxH = p.resizeW, p.resizeH
	default:
		return plan{}, fmt.Errorf("%w: fit %q", ErrInvalidOptions, fit)
	}
	p.scale = max(float64(p.resizeW)/float64(sw), float64(p.resizeH)/float64(sh))
	return p, nil
}

// outputPixels is the size of one output frame.
func (p plan) outputPixels() int64 { return int64(p.boxW) * int64(p.boxH) }

// offset places a length-inner window within outer by weight (0, 0.5, 1).
func offset(outer, inner int, weight float64) int {
	return int(math.Round(float64(outer-inner) * weight))
}

// loadShrink is the largest power-of-two shrink (up to 8) that keeps at
// least scale times the source: JPEG's DCT scaling and WebP's scaled decode
// do that much for a fraction of a full decode. Unlike vips_thumbnail, which
// leaves a factor of two to the lanczos3 resize, we shrink on load as far as
// possible: for a 4K photo to 1080 px this halves the CPU per image.
func loadShrink(scale float64) int {
	f := 1
	for f < 8 && 1/float64(f*2) >= scale {
		f *= 2
	}
	return f
}
