package resize

import (
	"errors"
	"fmt"
)

// Fit says how the source is fitted into Width×Height.
type Fit string

const (
	FitCover   Fit = "cover"   // fill the box, crop the overflow (by Gravity)
	FitContain Fit = "contain" // fit inside the box, pad to it with Background
	FitFill    Fit = "fill"    // stretch to exactly the box, ignoring aspect
	FitInside  Fit = "inside"  // fit inside the box, never enlarge, no padding
)

// Gravity says which part of the image cover keeps and where contain places it.
type Gravity string

const (
	GravityCentre    Gravity = "centre"
	GravityNorth     Gravity = "north"
	GravityNorthEast Gravity = "northeast"
	GravityEast      Gravity = "east"
	GravitySouthEast Gravity = "southeast"
	GravitySouth     Gravity = "south"
	GravitySouthWest Gravity = "southwest"
	GravityWest      Gravity = "west"
	GravityNorthWest Gravity = "northwest"
	GravitySmart     Gravity = "smart" // libvips attention crop; centre for contain
)

// Format is an image format this package decodes or encodes.
type Format string

const (
	FormatJPEG Format = "jpeg"
	FormatPNG  Format = "png"
	FormatWebP Format = "webp"
	FormatAVIF Format = "avif"
	FormatGIF  Format = "gif"
	// FormatHEIF is only ever a source format (iPhone photos); encode as AVIF.
	FormatHEIF Format = "heif"
)

// Options describe one output image.
type Options struct {
	Width, Height int // 0 = derive from the other keeping aspect; both 0 = source size
	Fit           Fit // "" = cover
	Gravity       Gravity
	Format        Format // concrete output format; "" = the source's (HEIF→AVIF)
	Quality       int    // 1..100, 0 = DefaultQuality
	KeepMetadata  bool   // false strips EXIF/XMP/IPTC (GPS) and ICC (output is sRGB)
	Animated      bool   // keep every frame of GIF/WebP; false = first frame only
	Background    [3]uint8
}

const (
	DefaultQuality = 80
	// MaxDimension is the largest output side: WebP's limit, and far above
	// any social-network size.
	MaxDimension = 16383
)

// Limits bound the work one input may cause.
type Limits struct {
	MaxInputBytes   int64 // compressed input
	MaxInputPixels  int64 // width×height of one frame, from the header
	MaxOutputPixels int64 // width×height of one output frame
	MaxFrames       int   // animation frames decoded when Animated
}

// DefaultLimits fit 48-megapixel phone photos and 4K output.
func DefaultLimits() Limits {
	return Limits{
		MaxInputBytes:   40 << 20,
		MaxInputPixels:  50_000_000,
		MaxOutputPixels: 4096 * 4096,
		MaxFrames:       200,
	}
}

// Validate reports every problem in l at once.
func (l Limits) Validate() error {
	var errs []error
	if l.MaxInputBytes <= 0 {
		errs = append(errs, fmt.Errorf("max input bytes %d: want > 0", l.MaxInputBytes))
	}
	if l.MaxInputPixels <= 0 {
		errs = append(errs, fmt.Errorf("max input pixels %d: want > 0", l.MaxInputPixels))
	}
	if l.MaxOutputPixels <= 0 {
		errs = append(errs, fmt.Errorf("max output pixels %d: want > 0", l.MaxOutputPixels))
	}
	if l.MaxFrames <= 0 {
		errs = append(errs, fmt.Errorf("max frames %d: want > 0", l.MaxFrames))
	}
	return errors.Join(errs...)
}

// Info is what Probe learns from the header.
type Info struct {
	Format        Format
	Width, Height int // of one frame, after EXIF orientation
	Pages         int // frames (GIF/WebP animation) or images (HEIF); 1 otherwise
	HasAlpha      bool
}

// Result is one encoded image.
type Result struct {
	Data          []byte
	Format        Format
	Width, Height int // of one frame
}

// Sentinel errors callers branch on; returned errors wrap them with detail.
var (
	ErrUnsupported    = errors.New("unsupported image format")
	ErrTooLarge       = errors.New("image too large")
	ErrCorrupt        = errors.New("corrupt image")
	ErrInvalidOptions = errors.New("invalid options")
)

// normalize fills defaults from the source and validates o.
func (o Options) normalize(src Info) (Options, error) {
	if o.Fit == "" {
		o.Fit = FitCover
	}
	if o.Gravity == "" {
		o.Gravity = GravityCentre
	}
	if o.Format == "" {
		o.Format = src.Format
	}
	if o.Format == FormatHEIF {
		o.Format = FormatAVIF
	}
	if o.Quality == 0 {
		o.Quality = DefaultQuality
	}
	var errs []error
	switch o.Fit {
	case FitCover, FitContain, FitFill, FitInside:
	default:
		errs = append(errs, fmt.Errorf("fit %q", o.Fit))
	}
	if _, ok := gravityWeights[o.Gravity]; !ok && o.Gravity != GravitySmart {
		errs = append(errs, fmt.Errorf("gravity %q", o.Gravity))
	}
	if _, ok := saveFormats[o.Format]; !ok {
		errs = append(errs, fmt.Errorf("output format %q", o.Format))
	}
	if o.Quality < 1 || o.Quality > 100 {
		errs = append(errs, fmt.Errorf("quality %d: want 1..100", o.Quality))
	}
	if o.Width < 0 || o.Width > MaxDimension || o.Height < 0 || o.Height > MaxDimension {
		errs = append(errs, fmt.Errorf("size %dx%d: want 0..%d", o.Width, o.Height, MaxDimension))
	}
	if err := errors.Join(errs...); err != nil {
		return o, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	return o, nil
}
