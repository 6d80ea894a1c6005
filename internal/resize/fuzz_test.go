package resize

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fuzzLimits keep every fuzz input small and fast.
var fuzzLimits = Limits{MaxInputBytes: 1 << 20, MaxInputPixels: 1 << 20, MaxOutputPixels: 256 * 256, MaxFrames: 8}

var fuzzOptions = []Options{
	{Width: 32, Height: 32, Format: FormatPNG},
	{Width: 20, Fit: FitContain, Gravity: GravityEast, Format: FormatJPEG, Animated: true},
	{Height: 24, Fit: FitInside, Format: FormatWebP, KeepMetadata: true},
}

// decodeOnce is the fuzzed path: Probe, then Process with a few options.
// Every failure must be one of the sentinel errors and come back quickly.
func decodeOnce(t *testing.T, data []byte) {
	_, err := Probe(data, fuzzLimits)
	if err != nil {
		if !classified(err) {
			t.Fatalf("Probe: unclassified error %v", err)
		}
		return
	}
	for _, o := range fuzzOptions {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		r, err := Process(ctx, data, o, fuzzLimits)
		cancel()
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("Process(%+v) took over 2s", o)
		case err != nil && !classified(err):
			t.Fatalf("Process(%+v): unclassified error %v", o, err)
		case err == nil && (len(r.Data) == 0 || r.Width <= 0 || r.Height <= 0 || int64(r.Width)*int64(r.Height) > fuzzLimits.MaxOutputPixels):
			t.Fatalf("Process(%+v): bad result %dx%d, %d bytes", o, r.Width, r.Height, len(r.Data))
		}
	}
}

func classified(err error) bool {
	return errors.Is(err, ErrUnsupported) || errors.Is(err, ErrTooLarge) || errors.Is(err, ErrCorrupt) || errors.Is(err, ErrInvalidOptions)
}

func FuzzDecode(f *testing.F) {
	// Seeds live in testdata/fuzz/FuzzDecode (RESIZE_WRITE_SEEDS=1 rewrites them).
	f.Fuzz(decodeOnce)
}

// TestFuzzSeedsStayBounded runs the seed corpus through the fuzzed path many
// times and checks libvips gives back what it took.
func TestFuzzSeedsStayBounded(t *testing.T) {
	seeds := fuzzSeeds(t)
	for name, data := range seeds {
		decodeOnce(t, data) // warm-up, and a named failure if any
		_ = name
	}
	before := ReadMemStats()
	for i := 0; i < 10; i++ {
		for _, data := range seeds {
			decodeOnce(t, data)
		}
	}
	after := ReadMemStats()
	if after.Mem > before.Mem+1<<20 || after.Allocs > before.Allocs+10 || after.Files > before.Files {
		t.Fatalf("libvips memory grew over the seed corpus: before %+v after %+v", before, after)
	}
}

// fuzzSeeds builds the seed inputs: small valid images of every format and
// broken ones. With RESIZE_WRITE_SEEDS=1 it also writes them as the corpus.
func fuzzSeeds(t *testing.T) map[string][]byte {
	jpg := encJPEG(t, bands(16, 12, red, green, blue))
	png := encPNG(t, bands(12, 12, clear, red))
	gif := animatedGIF(t, 6, 4, 3)
	webp, err := Process(context.Background(), gif, Options{Format: FormatWebP, Animated: true}, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	avif, err := Process(context.Background(), png, Options{Width: 8, Format: FormatAVIF}, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{
		"jpeg":           jpg,
		"jpeg-exif-gps":  withEXIF(t, jpg, 6, true),
		"jpeg-truncated": jpg[:len(jpg)*2/3],
		"png-alpha":      png,
		"png-truncated":  png[:len(png)/2],
		"png-bomb":       pngHeaderOnly(100000, 100000),
		"gif-animated":   gif,
		"webp-animated":  webp.Data,
		"avif":           avif.Data,
		"svg":            []byte(svgDoc),
		"empty":          {},
	}
	if os.Getenv("RESIZE_WRITE_SEEDS") == "1" {
		dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return seeds
}
