package resizer

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/shipteam/ship/internal/resize"
)

// Options is what a request asks for, parsed and normalised. Format may be
// "auto": the output format is then chosen per request from Accept and the
// source (see chooseFormat).
type Options struct {
	Width, Height int
	Fit           resize.Fit
	Gravity       resize.Gravity
	Format        string // "auto" or a resize.Format
	Quality       int    // 1..100; 0 lets the pipeline pick per format
	KeepAnimation bool   // anim=keep; default takes the first frame
	KeepMetadata  bool   // meta=keep; default strips EXIF/XMP/GPS (ICC is applied, not kept)
	Background    [3]uint8
}

// optionLimits bounds what a request may ask for.
type optionLimits struct {
	MaxDimension    int
	MaxOutputPixels int64
}

const formatAuto = "auto"

var (
	fits      = []resize.Fit{"cover", "contain", "fill", "inside"}
	gravities = []resize.Gravity{"centre", "north", "northeast", "east", "southeast", "south", "southwest", "west", "northwest", "smart"}
	formats   = []string{formatAuto, "jpeg", "png", "webp", "avif", "gif"}
)

// sizeParams may not be given to a preset route: the preset fixes them.
var sizeParams = map[string]bool{"w": true, "h": true, "fit": true}

// otherParams are request parameters that are not image options.
var otherParams = map[string]bool{"url": true, "s": true, "presets": true}

func defaultOptions() Options {
	return Options{Fit: "cover", Gravity: "centre", Format: formatAuto, Background: [3]uint8{255, 255, 255}}
}

// parseOptions reads the image options of a query. Unknown and repeated
// parameters are refused so a typo never silently changes the output.
func parseOptions(q url.Values, lim optionLimits) (Options, error) {
	o := defaultOptions()
	for k, vs := range q {
		if len(vs) > 1 {
			return o, newError(http.StatusBadRequest, codeInvalidOption, "parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		var err error
		switch k {
		case "w":
			o.Width, err = parseDim(k, v, lim.MaxDimension)
		case "h":
			o.Height, err = parseDim(k, v, lim.MaxDimension)
		case "fit":
			o.Fit, err = oneOf(k, v, fits)
		case "gravity":
			if v == "center" {
				v = "centre"
			}
			o.Gravity, err = oneOf(k, v, gravities)
		case "format":
			if v == "jpg" {
				v = "jpeg"
			}
			o.Format, err = oneOf(k, v, formats)
		case "q":
			o.Quality, err = parseInt(k, v, 1, 100)
		case "anim":
			var s string
			s, err = oneOf(k, v, []string{"first", "keep"})
			o.KeepAnimation = s == "keep"
		case "meta":
			var s string
			s, err = oneOf(k, v, []string{"strip", "keep"})
			o.KeepMetadata = s == "keep"
		case "bg":
			o.Background, err = parseColour(v)
		default:
			if !otherParams[k] {
				err = fmt.Errorf("unknown parameter %q", truncate(k, 32))
			}
		}
		if err != nil {
			return o, &apiError{status: http.StatusBadRequest, code: codeInvalidOption, message: err.Error()}
		}
	}
	if px := int64(o.Width) * int64(o.Height); px > lim.MaxOutputPixels {
		return o, newError(http.StatusBadRequest, codeInvalidOption,
			"w×h = %d pixels, more than the limit of %d", px, lim.MaxOutputPixels)
	}
	return o, nil
}

func parseDim(name, v string, max int) (int, error) {
	return parseInt(name, v, 1, max)
}

func parseInt(name, v string, min, max int) (int, error) {
	if len(v) == 0 || len(v) > 9 || strings.TrimLeft(v, "0123456789") != "" {
		return 0, fmt.Errorf("%s=%q: want an integer in %d..%d", name, truncate(v, 32), min, max)
	}
	n, _ := strconv.Atoi(v)
	if n < min || n > max {
		return 0, fmt.Errorf("%s=%d: want an integer in %d..%d", name, n, min, max)
	}
	return n, nil
}

func oneOf[T ~string](name, v string, allowed []T) (T, error) {
	for _, a := range allowed {
		if string(a) == v {
			return a, nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	return "", fmt.Errorf("%s=%q: want one of %s", name, truncate(v, 32), strings.Join(names, ", "))
}

func parseColour(v string) ([3]uint8, error) {
	var c [3]uint8
	v = strings.TrimPrefix(v, "#")
	if len(v) != 6 {
		return c, fmt.Errorf("bg=%q: want six hex digits like ffffff", truncate(v, 32))
	}
	for i := range 3 {
		n, err := strconv.ParseUint(v[2*i:2*i+2], 16, 8)
		if err != nil {
			return c, fmt.Errorf("bg=%q: want six hex digits like ffffff", v)
		}
		c[i] = uint8(n)
	}
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// String is the canonical form of the options: parseOptions of it gives the
// same Options back, and it is what the ETag hashes.
func (o Options) String() string {
	var b strings.Builder
	if o.Width > 0 {
		fmt.Fprintf(&b, "w=%d&", o.Width)
	}
	if o.Height > 0 {
		fmt.Fprintf(&b, "h=%d&", o.Height)
	}
	fmt.Fprintf(&b, "fit=%s&gravity=%s&format=%s&", o.Fit, o.Gravity, o.Format)
	if o.Quality > 0 {
		fmt.Fprintf(&b, "q=%d&", o.Quality)
	}
	anim, meta := "first", "strip"
	if o.KeepAnimation {
		anim = "keep"
	}
	if o.KeepMetadata {
		meta = "keep"
	}
	fmt.Fprintf(&b, "anim=%s&meta=%s&bg=%02x%02x%02x", anim, meta, o.Background[0], o.Background[1], o.Background[2])
	return b.String()
}

// pipelineOptions is the resize.Options for one source once the output format
// is known.
func (o Options) pipelineOptions(f resize.Format) resize.Options {
	return resize.Options{
		Width: o.Width, Height: o.Height, Fit: o.Fit, Gravity: o.Gravity, Format: f,
		Quality: o.Quality, KeepMetadata: o.KeepMetadata, Animated: o.KeepAnimation,
		Background: o.Background,
	}
}
