package goeryx

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// startupStep is one timed step of OpenRuntime.
type startupStep struct {
	name string
	d    time.Duration
}

// startupInfo records how OpenRuntime went: its steps and which caches it used (for the tests,
// the cold-start benchmark and the messages). Its methods may be called concurrently.
type startupInfo struct {
	mu    sync.Mutex
	steps []startupStep
	// moduleCached, imageCached, stdlibStamped: the file came from (was vouched for by) the
	// start-up cache.
	moduleCached, imageCached, stdlibStamped bool
	// codePrecompiled: wazero's cache links to the runtime's precompiled code (precompiled.go).
	codePrecompiled bool
	// damaged lists the cache files found damaged (and rebuilt).
	damaged []string

	start time.Time
	total time.Duration
	logMu sync.Mutex // serialises logf (a timer may call it)
	logf  func(format string, args ...any)
}

func newStartupInfo(logf func(string, ...any)) *startupInfo {
	return &startupInfo{start: time.Now(), logf: logf}
}

// since records a step that started at start. Steps run concurrently; the total is
// OpenRuntime's wall time.
func (s *startupInfo) since(name string, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.steps = append(s.steps, startupStep{name, time.Since(start)})
}

func (s *startupInfo) addDamaged(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.damaged, what) {
		s.damaged = append(s.damaged, what)
	}
}

func (s *startupInfo) log(format string, args ...any) {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if s.logf != nil {
		s.logf(format, args...)
	}
}

// slowNotice logs msg if done is not called within a second; done returns how long it took.
func (s *startupInfo) slowNotice(msg string) (done func() time.Duration) {
	start := time.Now()
	finished := false
	t := time.AfterFunc(time.Second, func() {
		s.logMu.Lock()
		defer s.logMu.Unlock()
		if !finished && s.logf != nil {
			s.logf("%s", msg)
		}
	})
	return func() time.Duration {
		t.Stop()
		s.logMu.Lock()
		finished = true
		s.logMu.Unlock()
		return time.Since(start)
	}
}

func (s *startupInfo) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, st := range s.steps {
		fmt.Fprintf(&b, "%-28s %8.1f ms\n", st.name, float64(st.d.Microseconds())/1000)
	}
	fmt.Fprintf(&b, "%-28s %8.1f ms (module cached %v, image cached %v, stdlib stamped %v)\n",
		"OpenRuntime", float64(s.total.Microseconds())/1000, s.moduleCached, s.imageCached, s.stdlibStamped)
	if s.codePrecompiled {
		b.WriteString("compiled code: precompiled\n")
	}
	return b.String()
}

// done records OpenRuntime's total time and reports the damaged cache files (OpenRuntime's
// goroutines have finished).
func (s *startupInfo) done() {
	s.mu.Lock()
	s.total = time.Since(s.start)
	damaged := slices.Clone(s.damaged)
	s.mu.Unlock()
	for _, what := range damaged {
		s.log("goeryx: ignored a damaged cache file, rebuilt: %s", what)
	}
}
