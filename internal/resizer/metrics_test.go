package resizer

import (
	"strconv"
	"strings"
	"testing"
)

func TestMetricsCountRequestsByRouteStatusPresetAndFormat(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Version = "metrics-v7" }, nil)
	src := jpegOf(t, 300, 200)
	do(t, "POST", ts.url+"/v1/resize?w=100&format=png", src)
	do(t, "POST", ts.url+"/v1/presets/x-post?format=jpeg", src)
	do(t, "POST", ts.url+"/v1/variants?presets=x-post,threads&format=webp", src)
	do(t, "POST", ts.url+"/v1/resize?w=abc", src)
	_, body := do(t, "GET", ts.url+"/metrics", nil)
	m := string(body)
	for _, want := range []string{
		`resizer_build_info{goversion="go`,
		`version="metrics-v7"} 1`,
		`resizer_requests_total{format="png",preset="",route="POST /v1/resize",status="200"} 1`,
		`resizer_requests_total{format="jpeg",preset="x-post",route="POST /v1/presets/{name}",status="200"} 1`,
		`resizer_requests_total{format="webp",preset="variants",route="POST /v1/variants",status="200"} 1`,
		`resizer_requests_total{format="",preset="",route="POST /v1/resize",status="400"} 1`,
		`resizer_request_duration_seconds_count{route="POST /v1/resize"} 2`,
		`resizer_processing_duration_seconds_count{op="variants"} 1`,
		`resizer_in_flight_requests 0`,
		`resizer_queue_depth 0`,
		`resizer_workers 2`,
		`resizer_vips_memory_highwater_bytes `,
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	in, _ := metricValue(t, ts.url, "resizer_bytes_in_total")
	out, _ := metricValue(t, ts.url, "resizer_bytes_out_total")
	inN, _ := strconv.ParseFloat(in, 64)
	outN, _ := strconv.ParseFloat(out, 64)
	if inN != float64(3*len(src)) || outN <= 0 {
		t.Errorf("bytes in %v (want %d: the 400 reads no body), out %v", in, 3*len(src), out)
	}
}

func TestReadyzReportsDraining(t *testing.T) {
	ts := startServer(t, nil, nil)
	if resp, _ := do(t, "GET", ts.url+"/readyz", nil); resp.StatusCode != 200 {
		t.Fatalf("readyz: %d", resp.StatusCode)
	}
	ts.draining.Store(true)
	resp, body := do(t, "GET", ts.url+"/readyz", nil)
	if resp.StatusCode != 503 || errorCode(t, resp, body) != codeDraining {
		t.Errorf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	if resp, _ := do(t, "GET", ts.url+"/healthz", nil); resp.StatusCode != 200 {
		t.Errorf("healthz while draining: %d", resp.StatusCode)
	}
}
