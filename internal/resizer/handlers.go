package resizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shipteam/ship/internal/resize"
)

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// handleReady reports 503 while draining so load balancers stop sending.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeError(w, r, newError(http.StatusServiceUnavailable, codeDraining, "shutting down"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "version": s.cfg.Version})
}

func (s *Server) handlePresetList(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{"presets": s.presets})
}

func (s *Server) handleResize(w http.ResponseWriter, r *http.Request) {
	o, aerr := s.requestOptions(r, false)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	s.render(w, r, renderJob{opts: []Options{o}})
}

func (s *Server) handlePreset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p, ok := findPreset(s.presets, name)
	if !ok {
		writeError(w, r, newError(http.StatusNotFound, codeUnknownPreset, "unknown preset %q; GET /v1/presets lists them", truncate(name, 40)))
		return
	}
	labelsFrom(r.Context()).preset = p.Name
	o, aerr := s.requestOptions(r, true)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	s.render(w, r, renderJob{opts: []Options{p.apply(o)}})
}

func (s *Server) handleVariants(w http.ResponseWriter, r *http.Request) {
	o, aerr := s.requestOptions(r, true)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	ps, err := selectPresets(s.presets, r.URL.Query().Get("presets"))
	if err != nil {
		writeError(w, r, pipelineError(err))
		return
	}
	job := renderJob{variants: true}
	for _, p := range ps {
		job.opts = append(job.opts, p.apply(o))
		job.names = append(job.names, p.Name)
	}
	if len(ps) == 1 {
		labelsFrom(r.Context()).preset = ps[0].Name
	} else {
		labelsFrom(r.Context()).preset = "variants"
	}
	s.render(w, r, job)
}

// requestOptions checks the signature and parses the image options of r.
// Preset routes may not set the size.
func (s *Server) requestOptions(r *http.Request, preset bool) (Options, *apiError) {
	if s.cfg.SigningKey != "" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		if aerr := verifySignature(s.cfg.SigningKey, r); aerr != nil {
			return Options{}, aerr
		}
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return Options{}, newError(http.StatusBadRequest, codeInvalidOption, "the query string cannot be parsed")
	}
	if preset {
		for k := range q {
			if sizeParams[k] {
				return Options{}, newError(http.StatusBadRequest, codeInvalidOption, "%s cannot be set here: the preset fixes the size", k)
			}
		}
	}
	o, err := parseOptions(q, s.optLim)
	if err != nil {
		return o, pipelineError(err)
	}
	return o, nil
}

// renderJob is what an image route asks of render.
type renderJob struct {
	opts     []Options
	names    []string // preset names, for variants
	variants bool     // answer multipart/mixed with one part per option set
}

// canonical is the part of the request that decides the output bytes,
// besides the source itself.
func (j renderJob) canonical(acc accepted) string {
	var b strings.Builder
	if j.variants {
		b.WriteString("variants\n")
	}
	for i, o := range j.opts {
		if j.variants {
			b.WriteString(j.names[i] + ":")
		}
		b.WriteString(o.String() + "\n")
	}
	if j.opts[0].Format == formatAuto {
		b.WriteString(acc.key())
	}
	return b.String()
}

// render runs the steps every image route shares:
//
//  1. admit (503 at once when workers and queue are full),
//  2. read the whole source, body or url=, before any worker is taken,
//  3. refuse what is plainly not an accepted image,
//  4. answer 304 when If-None-Match already has this output,
//  5. take a worker, probe and process under the request timeout,
//  6. give the worker back, then write the response.
func (s *Server) render(w http.ResponseWriter, r *http.Request, job renderJob) {
	l := labelsFrom(r.Context())

	leave, ok := s.pool.tryAdmit()
	if !ok {
		s.metrics.rejected.Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(s.cfg.RetryAfter/time.Second)))
		writeError(w, r, newError(http.StatusServiceUnavailable, codeOverloaded, "all workers and queue places are busy; retry later"))
		return
	}
	defer leave()

	src, aerr := s.loadSource(w, r)
	if aerr != nil {
		writeError(w, r, aerr)
		return
	}
	s.metrics.bytesIn.Add(float64(len(src)))
	if aerr := sniff(src); aerr != nil {
		writeError(w, r, aerr)
		return
	}

	acc := parseAccept(r.Header.Get("Accept"))
	etag := etagFor(s.cfg.Version, job.canonical(acc), src)
	h := w.Header()
	h.Set("ETag", etag)
	h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", int(s.cfg.CacheMaxAge/time.Second)))
	if job.opts[0].Format == formatAuto {
		h.Set("Vary", "Accept")
	}
	if etagMatches(r, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	results, err := s.process(ctx, src, job, acc)
	if err != nil {
		writeError(w, r, pipelineError(err))
		return
	}
	l.format = string(results[0].Format)
	if job.variants {
		s.writeVariants(w, r, job, results)
	} else {
		s.writeImage(w, r, results[0])
	}
}

// process holds a worker only for the pipeline call.
func (s *Server) process(ctx context.Context, src []byte, job renderJob, acc accepted) ([]resize.Result, error) {
	release, err := s.pool.acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for a worker: %w", err)
	}
	var once sync.Once
	done := func() { once.Do(release) }
	defer done()

	first := job.opts[0]
	format := resize.Format(first.Format)
	if first.Format == formatAuto {
		info, err := s.pipe.Probe(src, s.limits)
		if err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
		format = chooseFormat(first.Format, acc, info, first.KeepAnimation)
	}
	opts := make([]resize.Options, len(job.opts))
	for i, o := range job.opts {
		opts[i] = o.pipelineOptions(format)
	}
	start := time.Now()
	var results []resize.Result
	op := "resize"
	if job.variants {
		op = "variants"
		results, err = s.pipe.Variants(ctx, src, opts, s.limits)
	} else {
		var res resize.Result
		res, err = s.pipe.Process(ctx, src, opts[0], s.limits)
		results = []resize.Result{res}
	}
	s.metrics.processing.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if len(results) != len(opts) {
		return nil, fmt.Errorf("%s: %d results for %d option sets", op, len(results), len(opts))
	}
	return results, nil
}

func (s *Server) writeImage(w http.ResponseWriter, r *http.Request, res resize.Result) {
	h := w.Header()
	h.Set("Content-Type", contentType(res.Format))
	h.Set("Content-Length", strconv.Itoa(len(res.Data)))
	h.Set("X-Image-Width", strconv.Itoa(res.Width))
	h.Set("X-Image-Height", strconv.Itoa(res.Height))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	n, _ := w.Write(res.Data)
	s.metrics.bytesOut.Add(float64(n))
}

// writeVariants answers multipart/mixed: one part per preset, named by it,
// with its own Content-Type and size headers.
func (s *Server) writeVariants(w http.ResponseWriter, r *http.Request, job renderJob, results []resize.Result) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	var images int
	for i, res := range results {
		ph := textproto.MIMEHeader{}
		ph.Set("Content-Type", contentType(res.Format))
		ph.Set("Content-Disposition", fmt.Sprintf(`inline; name=%q; filename="%s.%s"`, job.names[i], job.names[i], extension(res.Format)))
		ph.Set("Content-Length", strconv.Itoa(len(res.Data)))
		ph.Set("X-Image-Width", strconv.Itoa(res.Width))
		ph.Set("X-Image-Height", strconv.Itoa(res.Height))
		pw, err := mw.CreatePart(ph)
		if err != nil {
			writeError(w, r, &apiError{http.StatusInternalServerError, codeInternal, "internal error", err})
			return
		}
		_, _ = pw.Write(res.Data)
		images += len(res.Data)
	}
	_ = mw.Close()
	h := w.Header()
	h.Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(buf.Bytes())
	s.metrics.bytesOut.Add(float64(images))
}

// loadSource reads the image: the body of a POST, or the url= of a GET.
// Bodies are read whole, at most MaxInputBytes, under the server's read
// timeout; a client too slow for it gets 408.
func (s *Server) loadSource(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	rawURL := r.URL.Query().Get("url")
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if rawURL == "" {
			return nil, newError(http.StatusBadRequest, codeMissingSource, "GET needs url=; or POST the image as the body")
		}
		data, err := s.fetcher.fetch(r.Context(), rawURL)
		if err != nil {
			return nil, fetchError(err)
		}
		return data, nil
	}
	if rawURL != "" {
		return nil, newError(http.StatusBadRequest, codeBodyAndURL, "POST sends the image as the body; url= is for GET")
	}
	if aerr := checkContentType(r.Header.Get("Content-Type")); aerr != nil {
		return nil, aerr
	}
	max := s.cfg.MaxInputBytes
	if r.ContentLength > max {
		w.Header().Set("Connection", "close")
		return nil, newError(http.StatusRequestEntityTooLarge, codeTooLarge, "the body is larger than %d bytes", max)
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength) + bytes.MinRead)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, newError(http.StatusRequestEntityTooLarge, codeTooLarge, "the body is larger than %d bytes", max)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			return nil, &apiError{http.StatusRequestTimeout, codeBodyTimeout, "the body was not received in time", err}
		default:
			return nil, &apiError{http.StatusBadRequest, codeEmptyBody, "the body could not be read completely", err}
		}
	}
	return buf.Bytes(), nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	data, _ := json.MarshalIndent(v, "", "  ")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(data, '\n'))
}
