package goeryx

import "time"

// Result is the outcome of a successful run (eryx.ExecuteResult).
type Result struct {
	Stdout, Stderr      string
	Duration            time.Duration
	CallbackInvocations int64
	PeakMemoryBytes     uint64
	// FuelConsumed is nil when fuel is not metered.
	FuelConsumed *uint64
	// ResultJSON is the captured result variable, nil when absent or not serialisable.
	ResultJSON *string
	// ResultError says why capture failed, nil otherwise.
	ResultError *string
}
