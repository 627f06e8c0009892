package abi

import (
	_ "embed"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

//go:embed eryx_abi.h
var header string

// TestHeaderMatchesGo keeps the Go constants and the C header (the one definition) in step.
func TestHeaderMatchesGo(t *testing.T) {
	goValues := map[string]any{
		"ERYX_ABI_VERSION":           Version,
		"ERYX_IMPORT_MODULE":         ImportModule,
		"ERYX_IMPORT_HOST_CALL":      ImportHostCall,
		"ERYX_IMPORT_HOST_TAKE":      ImportHostTake,
		"ERYX_IMPORT_TICK":           ImportTick,
		"ERYX_HOSTERR_BAD_REQUEST":   HostErrBadRequest,
		"ERYX_HOSTERR_UNKNOWN_OP":    HostErrUnknownOp,
		"ERYX_OP_DLOPEN":             OpDlopen,
		"ERYX_OP_DLSYM":              OpDlsym,
		"ERYX_HOSTERR_TOO_LARGE":     HostErrTooLarge,
		"ERYX_HOSTERR_NO_RESPONSE":   HostErrNoResponse,
		"ERYX_EXPORT_INITIALIZE":     ExportInitialize,
		"ERYX_EXPORT_INIT":           ExportInit,
		"ERYX_EXPORT_BOOT":           ExportBoot,
		"ERYX_EXPORT_CALL":           ExportCall,
		"ERYX_EXPORT_INTERRUPT":      ExportInterrupt,
		"ERYX_EXPORT_ALLOC":          ExportAlloc,
		"ERYX_EXPORT_FREE":           ExportFree,
		"ERYX_EXPORT_TICK_ANCHOR":    ExportTickAnchor,
		"ERYX_EXPORT_RESET_PREOPENS": ExportResetPreopens,
		"ERYX_GUEST_PREFIX":          GuestPrefix,
		"ERYX_GUEST_STDLIB_DIR":      GuestStdlibDir,
		"ERYX_DRIVER_MODULE":         DriverModule,
		"ERYX_DRIVER_HOST_GLOBAL":    DriverHostGlobal,
	}
	re := regexp.MustCompile(`(?m)^#define\s+(ERYX_[A-Z0-9_]+)\s+(.+?)\s*$`)
	seen := map[string]bool{}
	for _, m := range re.FindAllStringSubmatch(header, -1) {
		name, raw := m[1], m[2]
		if name == "ERYX_ABI_H" {
			continue
		}
		want, ok := goValues[name]
		require.Truef(t, ok, "%s is in eryx_abi.h but has no Go constant", name)
		seen[name] = true
		switch v := want.(type) {
		case string:
			got, err := strconv.Unquote(raw)
			require.NoError(t, err, name)
			require.Equal(t, v, got, name)
		case int:
			got, err := strconv.Atoi(regexp.MustCompile(`[()]`).ReplaceAllString(raw, ""))
			require.NoError(t, err, name)
			require.Equal(t, v, got, name)
		}
	}
	for name := range goValues {
		require.Truef(t, seen[name], "%s has a Go constant but is not in eryx_abi.h", name)
	}
}
