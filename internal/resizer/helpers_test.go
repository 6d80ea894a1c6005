package resizer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shipteam/ship/internal/resize"
)

func TestMain(m *testing.M) {
	if err := resize.Startup(resize.Config{}); err != nil {
		panic(err)
	}
	code := m.Run()
	resize.Shutdown()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// testServer is a Server serving on a real loopback listener.
type testServer struct {
	*Server
	url string
}

// startServer serves the real pipeline (wrapped by wrap when not nil) with
// test-sized limits, and stops it when the test ends.
func startServer(t *testing.T, mutate func(*Config), wrap func(Pipeline) Pipeline) *testServer {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.Version = "test-v1"
	cfg.Workers = 2
	cfg.Queue = 4
	cfg.SourceTimeout = 3 * time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	var pipe Pipeline = Libvips{}
	if wrap != nil {
		pipe = wrap(pipe)
	}
	log := slog.New(slog.NewJSONHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	s, err := New(cfg, pipe, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("server did not stop within 10s")
		}
	})
	return &testServer{Server: s, url: "http://" + ln.Addr().String()}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimSpace(p))
	return len(p), nil
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, url string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, data
}

// errorCode returns the code of a JSON error body, failing if it is not one.
func errorCode(t *testing.T, resp *http.Response, body []byte) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error response Content-Type %q, body %q", ct, truncate(string(body), 200))
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not a JSON error document: %q (%v)", body, err)
	}
	return e.Error.Code
}

// decoded decodes an image Go can read (JPEG, PNG, GIF) and returns its
// format name and size.
func decoded(t *testing.T, data []byte) (string, int, int) {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode output: %v", err)
	}
	return format, cfg.Width, cfg.Height
}

// probed reads format and size with libvips, for WebP and AVIF that Go's
// standard library cannot decode.
func probed(t *testing.T, data []byte) (resize.Format, int, int) {
	t.Helper()
	info, err := resize.Probe(data, resize.DefaultLimits())
	if err != nil {
		t.Fatalf("probe output: %v", err)
	}
	return info.Format, info.Width, info.Height
}

// gradient is a w×h test picture with detail in both directions.
func gradient(w, h int, alpha bool) *image.NRGBA {
	im := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			a := uint8(255)
			if alpha {
				a = uint8(x * 255 / w)
			}
			im.SetNRGBA(x, y, color.NRGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8((x + y) % 256), a})
		}
	}
	return im
}

func jpegOf(t testing.TB, w, h int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, gradient(w, h, false), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func pngOf(t testing.TB, w, h int, alpha bool) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, gradient(w, h, alpha)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gifOf(t testing.TB, w, h, frames int) []byte {
	t.Helper()
	pal := color.Palette{color.RGBA{255, 0, 0, 255}, color.RGBA{0, 255, 0, 255}, color.RGBA{0, 0, 255, 255}}
	g := &gif.GIF{}
	for i := range frames {
		fr := image.NewPaletted(image.Rect(0, 0, w, h), pal)
		for k := range fr.Pix {
			fr.Pix[k] = uint8(i % len(pal))
		}
		g.Image = append(g.Image, fr)
		g.Delay = append(g.Delay, 10)
	}
	var b bytes.Buffer
	if err := gif.EncodeAll(&b, g); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngHeaderClaiming is a PNG whose IHDR claims w×h but that carries no
// pixels: a decompression bomb's calling card.
func pngHeaderClaiming(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return b.Bytes()
}

// gatedPipeline holds each Process call until the test lets it go, so a
// test can keep a worker busy for as long as it needs.
type gatedPipeline struct {
	Pipeline
	entered chan struct{}
	gate    chan struct{}
}

func (g *gatedPipeline) Process(ctx context.Context, src []byte, o resize.Options, lim resize.Limits) (resize.Result, error) {
	g.entered <- struct{}{}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return resize.Result{}, ctx.Err()
	}
	return g.Pipeline.Process(ctx, src, o, lim)
}

// countingPipeline counts pipeline calls that decode pixels.
type countingPipeline struct {
	Pipeline
	calls atomic.Int64
}

func (c *countingPipeline) Process(ctx context.Context, src []byte, o resize.Options, lim resize.Limits) (resize.Result, error) {
	c.calls.Add(1)
	return c.Pipeline.Process(ctx, src, o, lim)
}

func (c *countingPipeline) Variants(ctx context.Context, src []byte, os []resize.Options, lim resize.Limits) ([]resize.Result, error) {
	c.calls.Add(1)
	return c.Pipeline.Variants(ctx, src, os, lim)
}

// waitFor polls cond until it holds or the deadline passes.
// metricValue scrapes /metrics and returns the value of the first sample
// whose line starts with prefix.
func metricValue(t *testing.T, base, prefix string) (string, bool) {
	t.Helper()
	_, body := do(t, "GET", base+"/metrics", nil)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			f := strings.Fields(line)
			return f[len(f)-1], true
		}
	}
	return "", false
}

// sourceServer serves data at any path on a loopback httptest server and
// returns its base URL.
func sourceServer(t *testing.T, data []byte) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(data)
	}))
	t.Cleanup(s.Close)
	return s.URL
}
