package resizer

import (
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

func TestPresetTable(t *testing.T) {
	ps, err := loadPresets(presetsJSON)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]int{
		"x-post": {1600, 900}, "x-header": {1500, 500}, "instagram-square": {1080, 1080},
		"instagram-portrait": {1080, 1350}, "instagram-story": {1080, 1920}, "instagram-landscape": {1080, 566},
		"facebook-link": {1200, 630}, "facebook-cover": {851, 315}, "facebook-story": {1080, 1920},
		"linkedin-post": {1200, 627}, "linkedin-cover": {1584, 396}, "pinterest-pin": {1000, 1500},
		"youtube-thumbnail": {1280, 720}, "tiktok": {1080, 1920}, "threads": {1080, 1350},
	}
	if len(ps) != len(want) {
		t.Errorf("%d presets, want %d", len(ps), len(want))
	}
	for _, p := range ps {
		if w, ok := want[p.Name]; !ok || w != [2]int{p.Width, p.Height} || p.Fit != "cover" {
			t.Errorf("preset %s %dx%d %s, want %v cover", p.Name, p.Width, p.Height, p.Fit, w)
		}
	}
	for _, bad := range []string{`[{"name":"A b","width":1,"height":1}]`, `[{"name":"a","width":0,"height":1}]`,
		`[{"name":"a","width":1,"height":1},{"name":"a","width":1,"height":1}]`, `[{"name":"all","width":1,"height":1}]`,
		`[{"name":"a","width":1,"height":1,"fit":"stretch"}]`, `{`} {
		if _, err := loadPresets([]byte(bad)); err == nil {
			t.Errorf("loadPresets(%s) accepted a bad table", bad)
		}
	}
}

func TestPresetsListedAndRendered(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.AllowPrivateSources = true }, nil)
	resp, body := do(t, "GET", ts.url+"/v1/presets", nil)
	var list struct{ Presets []Preset }
	if err := json.Unmarshal(body, &list); err != nil || resp.StatusCode != 200 {
		t.Fatalf("list: %d %s %v", resp.StatusCode, body, err)
	}
	if len(list.Presets) != 15 || list.Presets[0].Name != "x-post" || list.Presets[0].Width != 1600 {
		t.Errorf("list: %+v", list.Presets)
	}

	src := jpegOf(t, 640, 480)
	source := sourceServer(t, src)
	for _, c := range []struct {
		method, name string
		w, h         int
	}{{"POST", "instagram-story", 1080, 1920}, {"POST", "facebook-cover", 851, 315}, {"GET", "x-post", 1600, 900}} {
		u := ts.url + "/v1/presets/" + c.name + "?format=jpeg&q=70"
		var body []byte
		if c.method == "GET" {
			u += "&url=" + source + "/img.jpg"
		} else {
			body = src
		}
		resp, out := do(t, c.method, u, body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s %s: %d %s", c.method, c.name, resp.StatusCode, out)
		}
		if f, w, h := decoded(t, out); f != "jpeg" || w != c.w || h != c.h {
			t.Errorf("%s: %s %dx%d, want jpeg %dx%d", c.name, f, w, h, c.w, c.h)
		}
	}

	resp, body = do(t, "POST", ts.url+"/v1/presets/myspace-banner", src)
	if resp.StatusCode != 404 || errorCode(t, resp, body) != codeUnknownPreset {
		t.Errorf("unknown preset: %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", ts.url+"/v1/presets/x-post?w=10", src)
	if resp.StatusCode != 400 || errorCode(t, resp, body) != codeInvalidOption {
		t.Errorf("w on a preset: %d %s", resp.StatusCode, body)
	}
}

// variantParts parses a multipart/mixed answer into name → part.
type variantPart struct {
	contentType string
	width       int
	height      int
	data        []byte
}

func parseVariants(t *testing.T, resp *http.Response, body []byte) (names []string, parts map[string]variantPart) {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("Content-Type %q: %v", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(strings.NewReader(string(body)), params["boundary"])
	parts = map[string]variantPart{}
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := strconv.Atoi(p.Header.Get("X-Image-Width"))
		h, _ := strconv.Atoi(p.Header.Get("X-Image-Height"))
		disp, dparams, err := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
		if err != nil || disp != "inline" {
			t.Fatalf("Content-Disposition %q: %v", p.Header.Get("Content-Disposition"), err)
		}
		name := dparams["name"]
		names = append(names, name)
		parts[name] = variantPart{p.Header.Get("Content-Type"), w, h, data}
	}
	return names, parts
}

func TestVariantsReturnEveryPresetDecodedOnce(t *testing.T) {
	counter := &countingPipeline{}
	ts := startServer(t, nil, func(p Pipeline) Pipeline { counter.Pipeline = p; return counter })
	src := jpegOf(t, 800, 600)

	resp, body := do(t, "POST", ts.url+"/v1/variants?presets=x-post,instagram-square,pinterest-pin&format=jpeg", src)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	names, parts := parseVariants(t, resp, body)
	if strings.Join(names, ",") != "x-post,instagram-square,pinterest-pin" {
		t.Errorf("parts %v", names)
	}
	for name, want := range map[string][2]int{"x-post": {1600, 900}, "instagram-square": {1080, 1080}, "pinterest-pin": {1000, 1500}} {
		p := parts[name]
		f, w, h := decoded(t, p.data)
		if f != "jpeg" || p.contentType != "image/jpeg" || [2]int{w, h} != want || [2]int{p.width, p.height} != want {
			t.Errorf("%s: %s (%s) %dx%d, headers %dx%d, want %v", name, f, p.contentType, w, h, p.width, p.height, want)
		}
	}
	if n := counter.calls.Load(); n != 1 {
		t.Errorf("%d pipeline calls for one variants request, want 1", n)
	}

	resp, body = do(t, "POST", ts.url+"/v1/variants?presets=all", src, "Accept", "image/webp")
	if resp.StatusCode != 200 {
		t.Fatalf("all: status %d: %s", resp.StatusCode, body)
	}
	names, parts = parseVariants(t, resp, body)
	if len(names) != 15 {
		t.Errorf("all: %d parts, want 15", len(names))
	}
	for _, p := range Presets() {
		part := parts[p.Name]
		if f, w, h := probed(t, part.data); f != "webp" || w != p.Width || h != p.Height {
			t.Errorf("%s: %s %dx%d, want webp %dx%d", p.Name, f, w, h, p.Width, p.Height)
		}
	}

	for _, q := range []string{"presets=", "presets=x-post,nope", "presets=x-post&w=100"} {
		resp, body = do(t, "POST", ts.url+"/v1/variants?"+q, src)
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400: %s", q, resp.StatusCode, body)
		}
	}
}
