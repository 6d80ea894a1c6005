package resize

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func process(t *testing.T, src []byte, o Options) Result {
	t.Helper()
	r, err := Process(context.Background(), src, o, DefaultLimits())
	if err != nil {
		t.Fatalf("Process(%+v): %v", o, err)
	}
	return r
}

func TestProcessOutputSizeAndFormatGoldens(t *testing.T) {
	src := encJPEG(t, bands(400, 200, red, green, blue)) // 2:1
	tests := []struct {
		name       string
		o          Options
		wantW      int
		wantH      int
		wantFormat Format
	}{
		{"cover centre", Options{Width: 100, Height: 100, Fit: FitCover, Format: FormatJPEG}, 100, 100, FormatJPEG},
		{"cover west", Options{Width: 100, Height: 100, Fit: FitCover, Gravity: GravityWest, Format: FormatPNG}, 100, 100, FormatPNG},
		{"cover southeast", Options{Width: 50, Height: 80, Fit: FitCover, Gravity: GravitySouthEast, Format: FormatWebP}, 50, 80, FormatWebP},
		{"cover smart", Options{Width: 120, Height: 120, Fit: FitCover, Gravity: GravitySmart, Format: FormatJPEG}, 120, 120, FormatJPEG},
		{"cover enlarges", Options{Width: 800, Height: 800, Fit: FitCover, Format: FormatJPEG}, 800, 800, FormatJPEG},
		{"contain pads", Options{Width: 100, Height: 100, Fit: FitContain, Format: FormatPNG}, 100, 100, FormatPNG},
		{"fill stretches", Options{Width: 90, Height: 130, Fit: FitFill, Format: FormatJPEG}, 90, 130, FormatJPEG},
		{"inside shrinks", Options{Width: 100, Height: 100, Fit: FitInside, Format: FormatJPEG}, 100, 50, FormatJPEG},
		{"inside never enlarges", Options{Width: 1000, Height: 1000, Fit: FitInside, Format: FormatJPEG}, 400, 200, FormatJPEG},
		{"width only", Options{Width: 200, Format: FormatJPEG}, 200, 100, FormatJPEG},
		{"height only", Options{Height: 50, Format: FormatGIF}, 100, 50, FormatGIF},
		{"source size, source format", Options{}, 400, 200, FormatJPEG},
		{"avif", Options{Width: 64, Height: 64, Format: FormatAVIF}, 64, 64, FormatAVIF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := process(t, src, tt.o)
			if r.Width != tt.wantW || r.Height != tt.wantH || r.Format != tt.wantFormat {
				t.Fatalf("got %dx%d %s, want %dx%d %s", r.Width, r.Height, r.Format, tt.wantW, tt.wantH, tt.wantFormat)
			}
			info, err := Probe(r.Data, DefaultLimits())
			if err != nil {
				t.Fatalf("probe output: %v", err)
			}
			if info.Width != tt.wantW || info.Height != tt.wantH || info.Format != tt.wantFormat {
				t.Fatalf("output bytes are %dx%d %s, want %dx%d %s", info.Width, info.Height, info.Format, tt.wantW, tt.wantH, tt.wantFormat)
			}
		})
	}
}

func TestCoverGravityKeepsTheNamedSide(t *testing.T) {
	src := encPNG(t, bands(300, 100, red, green, blue)) // three 100×100 squares
	for g, want := range map[Gravity]string{
		GravityWest: "red", GravityCentre: "green", GravityEast: "blue",
		GravityNorthWest: "red", GravitySouthEast: "blue", GravityNorth: "green",
	} {
		r := process(t, src, Options{Width: 50, Height: 50, Fit: FitCover, Gravity: g, Format: FormatPNG})
		im := decodeAny(t, r.Data)
		if got := dominant(im, im.Bounds()); got != want {
			t.Errorf("gravity %s: output is %s, want %s", g, got, want)
		}
	}
}

func TestContainPadsWithBackgroundByGravity(t *testing.T) {
	src := encPNG(t, bands(200, 100, blue))
	white := [3]uint8{255, 255, 255}
	r := process(t, src, Options{Width: 100, Height: 100, Fit: FitContain, Gravity: GravityNorth, Format: FormatJPEG, Background: white})
	im := decodeAny(t, r.Data)
	if top := dominant(im, image.Rect(0, 0, 100, 45)); top != "blue" {
		t.Errorf("top half is %s, want the image (blue)", top)
	}
	if bottom := dominant(im, image.Rect(0, 55, 100, 100)); bottom != "white" {
		t.Errorf("bottom half is %s, want background (white)", bottom)
	}
}

func TestEXIFOrientationIsApplied(t *testing.T) {
	// Stored 200×100, red left half; orientation 6 shows it rotated 90° clockwise,
	// so it displays 100×200 with red on top.
	src := withEXIF(t, encJPEG(t, bands(200, 100, red, blue)), 6, false)
	info, err := Probe(src, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if info.Width != 100 || info.Height != 200 {
		t.Fatalf("Probe = %dx%d, want the displayed 100x200", info.Width, info.Height)
	}
	r := process(t, src, Options{Width: 50, Format: FormatJPEG})
	if r.Width != 50 || r.Height != 100 {
		t.Fatalf("got %dx%d, want 50x100", r.Width, r.Height)
	}
	im := decodeAny(t, r.Data)
	if got := dominant(im, image.Rect(0, 0, 50, 40)); got != "red" {
		t.Errorf("top is %s, want red", got)
	}
	if got := dominant(im, image.Rect(0, 60, 50, 100)); got != "blue" {
		t.Errorf("bottom is %s, want blue", got)
	}
	if tags := exifTags(r.Data); tags[0x0112] {
		t.Errorf("orientation tag still present after autorotation")
	}
	// Kept metadata must not make viewers rotate the rotated pixels again.
	kept := process(t, src, Options{Width: 50, Format: FormatJPEG, KeepMetadata: true})
	if o := exifOrientation(kept.Data); o > 1 {
		t.Errorf("KeepMetadata output says orientation %d after autorotation, want 1 or none", o)
	}
	if exifOrientation(src) != 6 {
		t.Fatalf("helper cannot read the input's orientation")
	}
}

func TestGPSIsStrippedByDefault(t *testing.T) {
	src := withEXIF(t, encJPEG(t, bands(64, 64, green)), 1, true)
	if tags := exifTags(src); !tags[0x8825] || !tags[0x0001] {
		t.Fatalf("test input lacks GPS tags: %v", tags)
	}
	kept := process(t, src, Options{Width: 32, Height: 32, Format: FormatJPEG, KeepMetadata: true})
	if tags := exifTags(kept.Data); !tags[0x8825] {
		t.Fatalf("KeepMetadata lost the GPS IFD (tags %v): the check below would prove nothing", tags)
	}
	for _, f := range []Format{FormatJPEG, FormatWebP, FormatPNG, FormatAVIF} {
		r := process(t, src, Options{Width: 32, Height: 32, Format: f})
		tags := exifTags(r.Data)
		if tags[0x8825] || tags[0x0001] {
			t.Errorf("%s output still carries GPS tags", f)
		}
		// libvips 8.14's webpsave writes a fresh minimal Exif block (size,
		// resolution) even for a stripped image; the others write none.
		if f != FormatWebP && bytes.Contains(r.Data, []byte("Exif\x00\x00")) {
			t.Errorf("%s output still carries Exif", f)
		}
	}
}

func TestAlphaKeptOrFlattened(t *testing.T) {
	src := encPNG(t, bands(100, 100, clear, red)) // left half transparent
	info, err := Probe(src, DefaultLimits())
	if err != nil || !info.HasAlpha {
		t.Fatalf("Probe = %+v, %v; want alpha", info, err)
	}
	r := process(t, src, Options{Width: 50, Height: 50, Format: FormatPNG})
	im := decodeAny(t, r.Data)
	if _, _, _, a := im.At(5, 25).RGBA(); a != 0 {
		t.Errorf("PNG output: transparent pixel has alpha %d", a>>8)
	}
	if _, _, _, a := im.At(45, 25).RGBA(); a>>8 != 255 {
		t.Errorf("PNG output: opaque pixel has alpha %d", a>>8)
	}
	for _, f := range []Format{FormatWebP, FormatAVIF} {
		out := process(t, src, Options{Width: 50, Height: 50, Format: f})
		if info, err := Probe(out.Data, DefaultLimits()); err != nil || !info.HasAlpha {
			t.Errorf("%s output: %+v, %v; want alpha kept", f, info, err)
		}
	}
	j := process(t, src, Options{Width: 50, Height: 50, Format: FormatJPEG, Background: [3]uint8{255, 255, 255}})
	jm := decodeAny(t, j.Data)
	if got := dominant(jm, image.Rect(0, 0, 20, 50)); got != "white" {
		t.Errorf("JPEG output: transparent half is %s, want the white background", got)
	}
	if got := dominant(jm, image.Rect(30, 0, 50, 50)); got != "red" {
		t.Errorf("JPEG output: opaque half is %s, want red", got)
	}
}

func TestAnimatedGIFKeepsFramesOrTakesFirst(t *testing.T) {
	src := animatedGIF(t, 40, 30, 3)
	info, err := Probe(src, DefaultLimits())
	if err != nil || info.Pages != 3 || info.Width != 40 || info.Height != 30 {
		t.Fatalf("Probe = %+v, %v; want 3 pages of 40x30", info, err)
	}
	for _, tt := range []struct {
		name   string
		o      Options
		frames int
		w, h   int
	}{
		{"keep, fit inside", Options{Width: 20, Height: 20, Fit: FitInside, Format: FormatGIF, Animated: true}, 3, 20, 15},
		{"keep, cover centre", Options{Width: 20, Height: 20, Fit: FitCover, Format: FormatGIF, Animated: true}, 3, 20, 20},
		{"keep, cover west", Options{Width: 10, Height: 20, Fit: FitCover, Gravity: GravityWest, Format: FormatGIF, Animated: true}, 3, 10, 20},
		{"keep, contain", Options{Width: 30, Height: 30, Fit: FitContain, Format: FormatGIF, Animated: true}, 3, 30, 30},
		{"first frame", Options{Width: 20, Height: 20, Fit: FitCover, Format: FormatGIF}, 1, 20, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := process(t, src, tt.o)
			g, err := gif.DecodeAll(bytes.NewReader(r.Data))
			if err != nil {
				t.Fatal(err)
			}
			if len(g.Image) != tt.frames || g.Config.Width != tt.w || g.Config.Height != tt.h {
				t.Fatalf("got %d frames %dx%d, want %d frames %dx%d", len(g.Image), g.Config.Width, g.Config.Height, tt.frames, tt.w, tt.h)
			}
			if r.Width != tt.w || r.Height != tt.h {
				t.Fatalf("Result says %dx%d, want %dx%d", r.Width, r.Height, tt.w, tt.h)
			}
			// Each kept frame keeps its own colour: frames were not mixed up.
			want := []string{"red", "green", "blue"}
			for i, fr := range g.Image {
				if got := dominant(fr, fr.Bounds().Intersect(image.Rect(0, 0, tt.w, tt.h))); got != want[i] {
					t.Errorf("frame %d is %s, want %s", i, got, want[i])
				}
			}
		})
	}
	webp := process(t, src, Options{Width: 20, Height: 20, Format: FormatWebP, Animated: true})
	if info, err := Probe(webp.Data, DefaultLimits()); err != nil || info.Pages != 3 {
		t.Errorf("animated WebP output: %+v, %v; want 3 pages", info, err)
	}
}

func TestTooManyFramesIsTooLarge(t *testing.T) {
	src := animatedGIF(t, 8, 8, 5)
	lim := DefaultLimits()
	lim.MaxFrames = 4
	_, err := Process(context.Background(), src, Options{Width: 4, Format: FormatGIF, Animated: true}, lim)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if _, err := Process(context.Background(), src, Options{Width: 4, Format: FormatGIF}, lim); err != nil {
		t.Fatalf("first frame only must not count frames: %v", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	src := encPNG(t, bands(10, 10, red))
	for _, o := range []Options{
		{Width: -1},
		{Width: MaxDimension + 1},
		{Width: 10, Fit: "squash"},
		{Width: 10, Gravity: "up"},
		{Width: 10, Format: "bmp"},
		{Width: 10, Quality: 101},
	} {
		if _, err := Process(context.Background(), src, o, DefaultLimits()); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%+v: err = %v, want ErrInvalidOptions", o, err)
		}
	}
	lim := DefaultLimits()
	lim.MaxOutputPixels = 100 * 100
	if _, err := Process(context.Background(), src, Options{Width: 101, Height: 100}, lim); !errors.Is(err, ErrTooLarge) {
		t.Errorf("output over the limit: err = %v, want ErrTooLarge", err)
	}
}

func TestExpiredContextStopsProcessing(t *testing.T) {
	src := encJPEG(t, bands(1200, 800, red, green))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Process(ctx, src, Options{Width: 100, Format: FormatJPEG}, DefaultLimits())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	big := encPNG(t, bands(3000, 3000, red, blue))
	o := Options{Width: 2900, Height: 2900, Fit: FitFill, Format: FormatPNG}
	start := time.Now()
	if _, err := Process(context.Background(), big, o, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel2 := context.WithTimeout(context.Background(), full/10)
	defer cancel2()
	start = time.Now()
	_, err = Process(ctx, big, o, DefaultLimits())
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	// libvips is stopped mid-evaluation, not left to finish the image.
	if took > full*6/10 {
		t.Fatalf("deadline of %v honoured only after %v (full run %v)", full/10, took, full)
	}
	t.Logf("full run %v; deadline %v honoured after %v", full, full/10, took)
}

func TestISRGBProfileDetection(t *testing.T) {
	mk := func(desc string) []byte {
		p := make([]byte, 132+12)
		p[131] = 1
		copy(p[132:], "desc")
		off := len(p)
		p = append(p, []byte(desc)...)
		p[132+7] = byte(off)
		p[132+11] = byte(len(desc))
		return p
	}
	if !isSRGBProfile(mk("descsRGB IEC61966-2.1")) {
		t.Error("sRGB profile not recognised")
	}
	if isSRGBProfile(mk("descDisplay P3")) {
		t.Error("Display P3 taken for sRGB")
	}
	if isSRGBProfile([]byte("short")) {
		t.Error("garbage taken for sRGB")
	}
}

func TestSixteenBitPNGWithAlphaComesOutEightBit(t *testing.T) {
	im := image.NewNRGBA64(image.Rect(0, 0, 64, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 64; x++ {
			a := uint16(0xFFFF)
			if x < 32 {
				a = 0
			}
			im.SetNRGBA64(x, y, color.NRGBA64{R: 0xFFFF, G: 0x8000, A: a})
		}
	}
	src := encPNG(t, im)
	r := process(t, src, Options{Width: 32, Height: 32, Format: FormatPNG})
	out := decodeAny(t, r.Data)
	if _, ok := out.(*image.NRGBA); !ok {
		t.Errorf("output is %T, want 8-bit NRGBA", out)
	}
	if _, _, _, a := out.At(4, 16).RGBA(); a != 0 {
		t.Errorf("transparent half has alpha %d", a>>8)
	}
	if cr, cg, _, a := out.At(28, 16).RGBA(); a>>8 != 255 || cr>>8 < 250 || cg>>8 < 120 || cg>>8 > 136 {
		t.Errorf("opaque half is r%d g%d a%d, want 255,128,255", cr>>8, cg>>8, a>>8)
	}
}

func TestEmbeddedDisplayP3ProfileIsConvertedToSRGB(t *testing.T) {
	vips, err := exec.LookPath("vips") // Debian libvips-tools, installed for tests
	if err != nil {
		t.Skip("vips command not installed")
	}
	dir := t.TempDir()
	srgb := filepath.Join(dir, "srgb.png")
	if err := os.WriteFile(srgb, encPNG(t, bands(32, 32, color.RGBA{200, 60, 40, 255})), 0o644); err != nil {
		t.Fatal(err)
	}
	p3 := filepath.Join(dir, "p3.jpg")
	if out, err := exec.Command(vips, "icc_transform", srgb, p3+"[Q=95]", "p3", "--input-profile", "srgb").CombinedOutput(); err != nil {
		t.Fatalf("make a Display P3 JPEG: %v: %s", err, out)
	}
	src, err := os.ReadFile(p3)
	if err != nil {
		t.Fatal(err)
	}
	// The stored values are P3 numbers, visibly different from the sRGB ones;
	// shown without the profile (stripped) they would be wrong colours.
	if r, g, _ := meanRGB(decodeAny(t, src), image.Rect(8, 8, 24, 24)); r > 192 || g < 65 {
		t.Fatalf("test input is not in P3 (r %.0f g %.0f)", r, g)
	}
	out := process(t, src, Options{Width: 16, Height: 16, Format: FormatJPEG})
	r, g, b := meanRGB(decodeAny(t, out.Data), image.Rect(4, 4, 12, 12))
	if math.Abs(r-200) > 5 || math.Abs(g-60) > 5 || math.Abs(b-40) > 5 {
		t.Fatalf("output is %.0f,%.0f,%.0f; want the sRGB 200,60,40", r, g, b)
	}
}
