package resizer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shipteam/ship/internal/resize"
)

// apiError is an error with the status and the public code and message a
// client sees. Detail that must not reach the client stays in the wrapped error
// (logged only).
type apiError struct {
	status  int
	code    string
	message string
	err     error
}

func (e *apiError) Error() string {
	if e.err != nil {
		return fmt.Sprintf("%s: %s: %v", e.code, e.message, e.err)
	}
	return e.code + ": " + e.message
}

func (e *apiError) Unwrap() error { return e.err }

func newError(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

// Error codes are part of the API (docs/resizer.md lists them).
const (
	codeInvalidOption      = "invalid_option"
	codeUnknownPreset      = "unknown_preset"
	codeEmptyBody          = "empty_body"
	codeTooLarge           = "too_large"
	codeUnsupportedType    = "unsupported_content_type"
	codeUnsupportedFormat  = "unsupported_format"
	codeCorrupt            = "corrupt_image"
	codeBadSignature       = "bad_signature"
	codeInvalidURL         = "invalid_url"
	codeForbiddenHost      = "forbidden_host"
	codeForbiddenAddress   = "forbidden_address"
	codeSourceStatus       = "source_status"
	codeSourceUnreachable  = "source_unreachable"
	codeSourceTimeout      = "source_timeout"
	codeSourceTooLarge     = "source_too_large"
	codeTooManyRedirects   = "too_many_redirects"
	codeBodyTimeout        = "body_timeout"
	codeOverloaded         = "overloaded"
	codeTimeout            = "timeout"
	codeNotFound           = "not_found"
	codeMethodNotAllowed   = "method_not_allowed"
	codeDraining           = "draining"
	codeInternal           = "internal"
	codeBodyAndURL         = "body_and_url"
	codeMissingSource      = "missing_source"
	codeUnsupportedEncoder = "unsupported_output"
)

// pipelineError maps an error of package resize to the public error.
func pipelineError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, resize.ErrTooLarge):
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge, "the image exceeds a size limit (bytes, pixels or frames)", err}
	case errors.Is(err, resize.ErrUnsupported):
		return &apiError{http.StatusUnsupportedMediaType, codeUnsupportedFormat, "the image format is not accepted (JPEG, PNG, WebP, GIF, AVIF/HEIC are)", err}
	case errors.Is(err, resize.ErrCorrupt):
		return &apiError{http.StatusUnprocessableEntity, codeCorrupt, "the image could not be decoded", err}
	case errors.Is(err, resize.ErrInvalidOptions):
		return &apiError{http.StatusBadRequest, codeInvalidOption, "the options cannot be applied to this image", err}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusGatewayTimeout, codeTimeout, "processing took longer than the request timeout", err}
	case errors.Is(err, context.Canceled):
		// The client went away; the status is only seen in logs and metrics.
		return &apiError{499, "canceled", "the request was canceled", err}
	default:
		return &apiError{http.StatusInternalServerError, codeInternal, "internal error", err}
	}
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError sends the JSON error document. Caching headers set for a success
// are removed so an error is never cached as the image.
func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	h := w.Header()
	for _, k := range []string{"ETag", "Cache-Control", "Vary", "Content-Disposition"} {
		h.Del(k)
	}
	if e.status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	if e.status >= 500 || e.status == http.StatusRequestTimeout {
		h.Set("Cache-Control", "no-store")
	}
	h.Set("Content-Type", "application/json")
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	data, _ := json.Marshal(b)
	h.Set("Content-Length", strconv.Itoa(len(data)+1))
	status := e.status
	if status == 499 {
		status = http.StatusBadRequest
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(data, '\n'))
	}
	if lr := labelsFrom(r.Context()); lr != nil {
		lr.err = e
	}
}
