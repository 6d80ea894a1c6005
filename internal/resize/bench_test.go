package resize

import (
	"context"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is this process's user+system CPU time, all threads included, so
// benchmarks report CPU per image even on a busy machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProcessFiles resizes every file matching $RESIZE_BENCH_GLOB (e.g.
// the ukui wallpapers) to 1080×1080 cover JPEG q80, the vipsthumbnail
// comparison's job, and reports CPU milliseconds per image.
func BenchmarkProcessFiles(b *testing.B) {
	files, _ := filepath.Glob(os.Getenv("RESIZE_BENCH_GLOB"))
	if len(files) == 0 {
		b.Skip("set RESIZE_BENCH_GLOB")
	}
	var srcs [][]byte
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		srcs = append(srcs, data)
	}
	o := Options{Width: 1080, Height: 1080, Fit: FitCover, Format: FormatJPEG, Quality: 80}
	var out int64
	c0 := cpuTime()
	for b.Loop() {
		for _, src := range srcs {
			r, err := Process(context.Background(), src, o, DefaultLimits())
			if err != nil {
				b.Fatal(err)
			}
			out += int64(len(r.Data))
		}
	}
	n := float64(b.N * len(srcs))
	b.ReportMetric(float64((cpuTime()-c0).Milliseconds())/n, "cpu-ms/img")
	b.ReportMetric(float64(out)/n, "bytes/img")
}

var (
	photoOnce sync.Once
	photo4K   []byte
)

// synthetic4K is a 3840×2400 JPEG with smooth gradients and grain, so the
// entropy decoder has photo-like work to do.
func synthetic4K(b *testing.B) []byte {
	photoOnce.Do(func() {
		if f := os.Getenv("RESIZE_BENCH_FILE"); f != "" {
			data, err := os.ReadFile(f)
			if err != nil {
				b.Fatal(err)
			}
			photo4K = data
			return
		}
		const w, h = 3840, 2400
		im := image.NewRGBA(image.Rect(0, 0, w, h))
		r := rand.New(rand.NewPCG(1, 2))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				n := uint8(r.IntN(24))
				im.SetRGBA(x, y, color.RGBA{uint8(x*255/w) ^ n, uint8(y*255/h) + n, uint8((x + y) * 255 / (w + h)), 255})
			}
		}
		photo4K = encJPEG(b, im)
	})
	return photo4K
}

func BenchmarkProcessCover1080(b *testing.B) {
	src := synthetic4K(b)
	o := Options{Width: 1080, Height: 1080, Fit: FitCover, Format: FormatJPEG, Quality: 80}
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := Process(context.Background(), src, o, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPresetsByProcess and BenchmarkPresetsByVariants render the same
// eight social presets; their ratio is what /v1/variants saves.
func BenchmarkPresetsByProcess(b *testing.B) {
	src := synthetic4K(b)
	c0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-c0).Milliseconds())/float64(b.N), "cpu-ms/op") }()
	for b.Loop() {
		for _, o := range socialPresets {
			if _, err := Process(context.Background(), src, o, DefaultLimits()); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkPresetsByVariants(b *testing.B) {
	src := synthetic4K(b)
	c0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-c0).Milliseconds())/float64(b.N), "cpu-ms/op") }()
	for b.Loop() {
		if _, err := Variants(context.Background(), src, socialPresets, DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
}
