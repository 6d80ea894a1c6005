package resizer

import (
	"runtime"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/shipteam/ship/internal/resize"
)

// metrics are the service's Prometheus series. ship's canary analysis
// compares two versions through requests_total and the latency histogram,
// so their names and labels are an interface (docs/resizer.md).
type metrics struct {
	registry   *prometheus.Registry
	requests   *prometheus.CounterVec   // route, status, preset, format
	latency    *prometheus.HistogramVec // route
	processing *prometheus.HistogramVec // op
	inFlight   prometheus.Gauge
	bytesIn    prometheus.Counter
	bytesOut   prometheus.Counter
	rejected   prometheus.Counter
}

func newMetrics(version string, p *pool) *metrics {
	reg := prometheus.NewRegistry()
	m := &metrics{
		registry: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "resizer_requests_total",
			Help: "HTTP requests served, by route pattern, status code, preset and output format.",
		}, []string{"route", "status", "preset", "format"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "resizer_request_duration_seconds",
			Help:    "Time from the request's headers to the end of the response, by route pattern.",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .35, .5, .75, 1, 1.5, 2.5, 5, 10, 20},
		}, []string{"route"}),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "resizer_processing_duration_seconds",
			Help:    "Time a worker spent in the image pipeline, by operation (resize, variants).",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .35, .5, .75, 1, 1.5, 2.5, 5, 10, 20},
		}, []string{"op"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "resizer_in_flight_requests",
			Help: "Requests being served now (health and metrics routes excluded).",
		}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resizer_bytes_in_total",
			Help: "Source image bytes received, from request bodies and url= fetches.",
		}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resizer_bytes_out_total",
			Help: "Encoded image bytes sent.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "resizer_rejected_total",
			Help: "Requests refused with 503 because the queue was full.",
		}),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "resizer_build_info",
		Help:        "Always 1; the labels carry the running version.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
	})
	buildInfo.Set(1)
	reg.MustRegister(m.requests, m.latency, m.processing, m.inFlight, m.bytesIn, m.bytesOut, m.rejected, buildInfo,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "resizer_queue_depth",
			Help: "Admitted requests not holding a worker (reading a body, fetching a source or waiting).",
		}, func() float64 { return float64(p.admitted() - p.working()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "resizer_workers_busy",
			Help: "Workers processing an image now.",
		}, func() float64 { return float64(p.working()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "resizer_workers",
			Help: "Configured number of workers.",
		}, func() float64 { return float64(cap(p.workers)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "resizer_vips_memory_bytes",
			Help: "Pixel memory libvips tracks now.",
		}, func() float64 { return float64(resize.ReadMemStats().Mem) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "resizer_vips_memory_highwater_bytes",
			Help: "Most pixel memory libvips has tracked since start.",
		}, func() float64 { return float64(resize.ReadMemStats().MemHighwater) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}
