package resize

/*
#cgo pkg-config: vips
#include "bridge.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// Config tunes libvips for the process. The zero value is valid.
type Config struct {
	// Concurrency is the number of libvips worker threads per image.
	// Default 1: the HTTP layer's worker pool is the unit of parallelism,
	// and more threads per image only add contention on small machines.
	Concurrency int
	// CacheMaxOps is the size of libvips' operation cache. Default 0 (off):
	// every request brings new bytes, so cached operations are never reused
	// and would only hold memory.
	CacheMaxOps int
	// MallocArenas caps glibc's malloc arenas (M_ARENA_MAX). Default 2:
	// measured on 4K photos at 16 concurrent requests, it cuts peak RSS from
	// about 470 to 310 MiB at no cost in throughput. -1 keeps glibc's default.
	MallocArenas int
	// MallocMmapThreshold (bytes) sends allocations at least this big to
	// mmap, so they return to the kernel when freed (M_MMAP_THRESHOLD).
	// Default 8 MiB: with MallocArenas it took peak RSS after variants and 16
	// concurrent 4K requests from about 430 to 310 MiB for ~2% more CPU.
	// -1 keeps glibc's adaptive threshold.
	MallocMmapThreshold int
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Concurrency < 0 || c.Concurrency > 64 {
		errs = append(errs, fmt.Errorf("concurrency %d: want 0..64", c.Concurrency))
	}
	if c.MallocArenas < -1 || c.MallocArenas > 64 {
		errs = append(errs, fmt.Errorf("malloc arenas %d: want -1..64", c.MallocArenas))
	}
	if c.MallocMmapThreshold < -1 {
		errs = append(errs, fmt.Errorf("malloc mmap threshold %d: want -1 or more", c.MallocMmapThreshold))
	}
	if c.CacheMaxOps < 0 {
		errs = append(errs, fmt.Errorf("cache max ops %d: want >= 0", c.CacheMaxOps))
	}
	return errors.Join(errs...)
}

var (
	startOnce sync.Once
	startErr  error
	started   bool
)

// Startup initialises libvips once per process: threads, cache and the
// loader block list. Later calls return the first call's result.
func Startup(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("resize config: %w", err)
	}
	startOnce.Do(func() {
		conc := cfg.Concurrency
		if conc == 0 {
			conc = 1
		}
		cacheMem := C.size_t(0)
		if cfg.CacheMaxOps > 0 {
			cacheMem = 64 << 20
		}
		arenas := cfg.MallocArenas
		if arenas == 0 {
			arenas = 2
		}
		mmapThreshold := cfg.MallocMmapThreshold
		if mmapThreshold == 0 {
			mmapThreshold = 8 << 20
		}
		if C.rs_startup(C.int(conc), C.int(cfg.CacheMaxOps), cacheMem, C.int(arenas), C.int(mmapThreshold)) != 0 {
			startErr = fmt.Errorf("vips startup: %w", vipsError())
			return
		}
		started = true
	})
	return startErr
}

// Shutdown releases libvips. No call into this package may follow it.
func Shutdown() {
	if started {
		C.vips_shutdown()
	}
}

// MemStats is libvips' own accounting of pixel buffers, for /metrics and
// leak checks.
type MemStats struct {
	Mem, MemHighwater int64 // bytes tracked by libvips
	Allocs            int   // live tracked allocations
	Files             int   // open files
}

// ReadMemStats returns libvips' current memory accounting.
func ReadMemStats() MemStats {
	return MemStats{
		Mem:          int64(C.vips_tracked_get_mem()),
		MemHighwater: int64(C.vips_tracked_get_mem_highwater()),
		Allocs:       int(C.vips_tracked_get_allocs()),
		Files:        int(C.vips_tracked_get_files()),
	}
}

// vipsError takes (and clears) libvips' error buffer. The buffer is global
// in libvips, so under concurrency a message may mix two requests; it is
// for logs only and callers branch on the sentinel errors instead.
func vipsError() error {
	p := C.rs_error()
	if p == nil {
		return errors.New("libvips: unknown error")
	}
	defer C.rs_free(unsafe.Pointer(p))
	msg := strings.TrimSpace(C.GoString(p))
	if msg == "" {
		msg = "unknown error"
	}
	return errors.New("libvips: " + strings.ReplaceAll(msg, "\n", "; "))
}

// vimage owns one reference to a VipsImage.
type vimage struct{ p *C.VipsImage }

func (im *vimage) close() {
	if im != nil && im.p != nil {
		C.rs_unref(im.p)
		im.p = nil
	}
}

func (im *vimage) width() int  { return int(im.p.Xsize) }
func (im *vimage) height() int { return int(im.p.Ysize) }
func (im *vimage) bands() int  { return int(im.p.Bands) }
func (im *vimage) hasAlpha() bool {
	return C.vips_image_hasalpha(im.p) != 0
}
func (im *vimage) pageHeight() int { return int(C.vips_image_get_page_height(im.p)) }
func (im *vimage) pages() int {
	ph := im.pageHeight()
	if ph <= 0 || ph >= im.height() || im.height()%ph != 0 {
		return 1
	}
	return im.height() / ph
}

// replace swaps im's reference for out, the result of an operation on it.
func (im *vimage) replace(out *C.VipsImage) {
	C.rs_unref(im.p)
	im.p = out
}

// setLoaderBlocked flips libvips' block flag for one operation class. Tests
// use it to show that the block list, not a missing loader, refuses a file.
func setLoaderBlocked(name string, blocked bool) {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	C.vips_operation_block_set(cs, cbool(blocked))
}
