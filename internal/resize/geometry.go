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

type cropMode int

const (
	cropNone cropMode = iota
	cropCentre
	cropAttention
)

type sizeMode int

const (
	sizeBoth  sizeMode = iota // scale up or down to fit
	sizeDown                  // only ever shrink
	sizeForce                 // exactly the box, aspect ignored
)

type postMode int

const (
	postNone    postMode = iota
	postExtract          // cut a box out of a larger frame, by gravity
	postEmbed            // pad a smaller frame to the box, by gravity
)

// plan is the geometry of one output, a pure function of the source frame
// size and the options, so it is tested without libvips.
type plan struct {
	thumbW, thumbH int // what vips_thumbnail is asked for
	crop           cropMode
	size           sizeMode
	post           postMode
	boxW, boxH     int        // final frame size, for post != postNone
	weight         [2]float64 // gravity for post
	scale          float64    // largest source→output scale on either axis
}

// makePlan computes the geometry for a sw×sh source frame (already oriented).
// animated disables libvips' own crop, which would cut across frames.
func makePlan(sw, sh int, o Options, animated bool) (plan, error) {
	if sw <= 0 || sh <= 0 {
		return plan{}, fmt.Errorf("%w: source %dx%d", ErrCorrupt, sw, sh)
	}
	w, h := o.Width, o.Height
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
	p := plan{thumbW: w, thumbH: h, boxW: w, boxH: h}
	gw := gravityWeights[o.Gravity]
	if o.Gravity == GravitySmart || o.Gravity == "" {
		gw = gravityWeights[GravityCentre]
	}
	switch o.Fit {
	case FitCover, "":
		s := max(sx, sy)
		p.scale = s
		switch {
		case !animated && (o.Gravity == GravityCentre || o.Gravity == ""):
			p.crop = cropCentre
		case !animated && o.Gravity == GravitySmart:
			p.crop = cropAttention
		default:
			// Scale to cover, then cut the box by gravity ourselves.
			p.thumbW = max(w, int(math.Round(float64(sw)*s)))
			p.thumbH = max(h, int(math.Round(float64(sh)*s)))
			p.size = sizeForce
			if p.thumbW != w || p.thumbH != h {
				p.post, p.weight = postExtract, gw
			}
		}
	case FitContain:
		s := min(sx, sy)
		p.scale = s
		p.post, p.weight = postEmbed, gw
	case FitFill:
		p.size = sizeForce
		p.scale = max(sx, sy)
	case FitInside:
		s := min(sx, sy, 1)
		p.scale = s
		p.size = sizeDown
		p.boxW = max(1, int(math.Round(float64(sw)*s)))
		p.boxH = max(1, int(math.Round(float64(sh)*s)))
	default:
		return plan{}, fmt.Errorf("%w: fit %q", ErrInvalidOptions, o.Fit)
	}
	return p, nil
}

// outputPixels is the size of one output frame.
func (p plan) outputPixels() int64 { return int64(p.boxW) * int64(p.boxH) }

// offset places a length-inner window within outer by weight (0, 0.5, 1).
func offset(outer, inner int, weight float64) int {
	return int(math.Round(float64(outer-inner) * weight))
}
