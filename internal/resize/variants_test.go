package resize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// socialPresets mirror the sizes the HTTP layer ships (internal/resizer
// presets.json): fifteen presets, some of them the same size.
var socialPresets = func() []Options {
	var out []Options
	for _, wh := range [][2]int{
		{1600, 900}, {1500, 500}, {1080, 1080}, {1080, 1350}, {1080, 1920},
		{1080, 566}, {1200, 630}, {851, 315}, {1080, 1920}, {1200, 627},
		{1584, 396}, {1000, 1500}, {1280, 720}, {1080, 1920}, {1080, 1350},
	} {
		out = append(out, Options{Width: wh[0], Height: wh[1], Fit: FitCover, Format: FormatJPEG, Quality: 80})
	}
	return out
}()

func TestVariantsMatchProcessDimensions(t *testing.T) {
	src := withEXIF(t, encJPEG(t, bands(1200, 800, red, green, blue)), 6, false)
	opts := []Options{
		{Width: 300, Height: 300, Fit: FitCover, Format: FormatJPEG},
		{Width: 100, Height: 200, Fit: FitCover, Gravity: GravityEast, Format: FormatPNG},
		{Width: 250, Height: 250, Fit: FitContain, Format: FormatWebP},
		{Width: 90, Height: 60, Fit: FitFill, Format: FormatJPEG},
		{Width: 500, Height: 500, Fit: FitInside, Format: FormatJPEG},
		{Width: 1000, Fit: FitInside, Format: FormatJPEG},
		{Width: 40, Height: 40, Fit: FitCover, Gravity: GravitySmart, Format: FormatAVIF},
	}
	got, err := Variants(context.Background(), src, opts, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(opts) {
		t.Fatalf("%d results for %d options", len(got), len(opts))
	}
	for i, o := range opts {
		want := process(t, src, o)
		if got[i].Width != want.Width || got[i].Height != want.Height || got[i].Format != want.Format {
			t.Errorf("variant %d %+v: %dx%d %s, Process gives %dx%d %s", i, o,
				got[i].Width, got[i].Height, got[i].Format, want.Width, want.Height, want.Format)
		}
		info, err := Probe(got[i].Data, DefaultLimits())
		if err != nil || info.Width != want.Width || info.Height != want.Height {
			t.Errorf("variant %d bytes: %+v, %v", i, info, err)
		}
	}
	// Orientation 6 turned the vertical red|green|blue bands of the 1200×800
	// source into horizontal ones on an 800×1200 portrait: the centre square
	// crop shows red on top, green in the middle, blue at the bottom.
	im := decodeAny(t, got[0].Data)
	for _, band := range []struct {
		y0, y1 int
		want   string
	}{{0, 50, "red"}, {125, 175, "green"}, {250, 300, "blue"}} {
		if c := dominant(im, image.Rect(0, band.y0, 300, band.y1)); c != band.want {
			t.Errorf("variant 0 rows %d..%d show %s, want %s", band.y0, band.y1, c, band.want)
		}
	}
}

func TestVariantsRejectBadOptionsBeforeDecoding(t *testing.T) {
	src := encPNG(t, bands(50, 50, red))
	_, err := Variants(context.Background(), src, []Options{{Width: 10}, {Width: 10, Fit: "squash"}}, DefaultLimits())
	if !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("err = %v, want ErrInvalidOptions", err)
	}
	if _, err := Variants(context.Background(), src, nil, DefaultLimits()); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("no options: err = %v, want ErrInvalidOptions", err)
	}
}

func TestVariantsWithAnimatedAndStillOutputs(t *testing.T) {
	src := animatedGIF(t, 40, 30, 3)
	got, err := Variants(context.Background(), src, []Options{
		{Width: 20, Height: 20, Format: FormatGIF, Animated: true},
		{Width: 20, Height: 20, Format: FormatPNG},
	}, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Probe(got[0].Data, DefaultLimits())
	s, _ := Probe(got[1].Data, DefaultLimits())
	if a.Pages != 3 || s.Pages != 1 {
		t.Fatalf("pages: animated %d, still %d; want 3 and 1", a.Pages, s.Pages)
	}
}

func TestLoadShrink(t *testing.T) {
	for _, tt := range []struct {
		scale float64
		want  int
	}{{1, 1}, {0.8, 1}, {0.5, 2}, {0.45, 2}, {0.25, 4}, {0.2, 4}, {0.1, 8}, {0.01, 8}, {3, 1}} {
		if got := loadShrink(tt.scale); got != tt.want {
			t.Errorf("loadShrink(%v) = %d, want %d", tt.scale, got, tt.want)
		}
	}
}

func TestNoLibvipsLeaksAcrossManyCalls(t *testing.T) {
	src := withEXIF(t, encJPEG(t, bands(1200, 800, red, blue)), 6, true)
	gifSrc := animatedGIF(t, 30, 30, 4)
	small := []Options{
		{Width: 160, Height: 90, Format: FormatJPEG},
		{Width: 100, Height: 100, Gravity: GravitySouth, Format: FormatWebP},
		{Width: 120, Height: 120, Fit: FitContain, Format: FormatPNG},
	}
	run := func() {
		for _, o := range small {
			if _, err := Process(context.Background(), src, o, DefaultLimits()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := Variants(context.Background(), src, small, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		if _, err := Process(context.Background(), gifSrc, Options{Width: 10, Height: 20, Gravity: GravityEast, Animated: true}, DefaultLimits()); err != nil {
			t.Fatal(err)
		}
		_, _ = Process(context.Background(), src[:len(src)/2], Options{Width: 10}, DefaultLimits())
	}
	for i := 0; i < 10; i++ {
		run() // warm up libvips' per-thread buffers and malloc arenas
	}
	before, rssBefore := ReadMemStats(), rssKB(t)
	for i := 0; i < 100; i++ {
		run()
	}
	// libvips' worker threads may still be releasing the last call's
	// buffers when it returns (seen on a loaded machine: 19 allocations,
	// 50 KB, a moment after): wait for them, a leak never comes back.
	after := ReadMemStats()
	for deadline := time.Now().Add(5 * time.Second); (after.Mem > before.Mem+1<<20 || after.Allocs > before.Allocs+10) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		after = ReadMemStats()
	}
	rssAfter := rssKB(t)
	t.Logf("libvips tracked %d→%d bytes, %d→%d allocs; RSS %d→%d KiB", before.Mem, after.Mem, before.Allocs, after.Allocs, rssBefore, rssAfter)
	// Each iteration decodes a 1200×800 image (2.9 MB of pixels, twice in
	// Variants): leaking one per iteration would add hundreds of MB.
	if after.Mem > before.Mem+1<<20 || after.Allocs > before.Allocs+10 || after.Files > before.Files {
		t.Fatalf("libvips memory grew: before %+v after %+v", before, after)
	}
	if rssAfter > rssBefore+64<<10 {
		t.Fatalf("RSS grew from %d to %d KiB over 100 iterations", rssBefore, rssAfter)
	}
}

func rssKB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	t.Skip("no VmRSS")
	return 0
}

func TestVariantsDecodeStopsAtTheDeadline(t *testing.T) {
	big := encPNG(t, bands(3000, 3000, red, blue))
	opts := []Options{{Width: 2900, Height: 2900, Format: FormatPNG}, {Width: 100, Format: FormatPNG}}
	start := time.Now()
	if _, err := Variants(context.Background(), big, opts, DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), full/10)
	defer cancel()
	start = time.Now()
	_, err := Variants(ctx, big, opts, DefaultLimits())
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if took > full*6/10 {
		t.Fatalf("deadline of %v honoured only after %v (full run %v)", full/10, took, full)
	}
}

func TestConcurrentCallsAgree(t *testing.T) {
	jpg := withEXIF(t, encJPEG(t, bands(640, 400, red, green, blue)), 6, true)
	png := encPNG(t, bands(300, 300, clear, blue))
	gifSrc := animatedGIF(t, 40, 30, 3)
	type call struct {
		src []byte
		o   Options
	}
	calls := []call{
		{jpg, Options{Width: 100, Height: 100, Format: FormatJPEG}},
		{png, Options{Width: 64, Height: 32, Fit: FitContain, Format: FormatWebP}},
		{gifSrc, Options{Width: 20, Height: 20, Gravity: GravityWest, Format: FormatGIF, Animated: true}},
		{jpg, Options{Width: 80, Gravity: GravitySmart, Format: FormatPNG}},
	}
	want := make([]Result, len(calls))
	for i, c := range calls {
		want[i] = process(t, c.src, c.o)
	}
	errs := make(chan error, 64)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func(g int) {
			defer func() { done <- struct{}{} }()
			for k := 0; k < 6; k++ {
				i := (g + k) % len(calls)
				r, err := Process(context.Background(), calls[i].src, calls[i].o, DefaultLimits())
				if err == nil && (r.Width != want[i].Width || r.Height != want[i].Height || !bytes.Equal(r.Data, want[i].Data)) {
					err = fmt.Errorf("call %d: %dx%d, %d bytes; alone it gave %dx%d, %d bytes", i, r.Width, r.Height, len(r.Data), want[i].Width, want[i].Height, len(want[i].Data))
				}
				if err == nil && k%3 == 0 {
					_, err = Variants(context.Background(), jpg, []Options{calls[0].o, calls[3].o}, DefaultLimits())
				}
				if err != nil {
					errs <- err
				}
			}
		}(g)
	}
	for g := 0; g < 8; g++ {
		<-done
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
