package net

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Error is an exception the guest's socket shim raises (API.md §3.4). Type is the guest's
// exception class; Errno, when set, is a symbolic errno name ("ECONNREFUSED", or "EAI_NONAME"
// for gaierror) that the guest maps to its own numbers. Messages never contain host paths:
// they are built here, never copied from a host error that could carry one.
type Error struct {
	Type    string `json:"type"`
	Errno   string `json:"errno,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Type + ": " + e.Message }

func permission(format string, args ...any) *Error {
	return &Error{Type: "PermissionError", Errno: "EACCES", Message: "not permitted: " + fmt.Sprintf(format, args...)}
}

// Errors the guest sees.
var (
	ErrNotEnabled = permission("networking is not enabled for this sandbox")
	ErrTimeout    = &Error{Type: "TimeoutError", Errno: "ETIMEDOUT", Message: "timed out"}
	ErrNotFound   = &Error{Type: "gaierror", Errno: "EAI_NONAME", Message: "Name or service not known"}
	ErrClosed     = &Error{Type: "OSError", Errno: "EBADF", Message: "Bad file descriptor"}
)

var errnoTexts = map[syscall.Errno]struct{ typ, name, text string }{
	syscall.ECONNREFUSED:  {"ConnectionRefusedError", "ECONNREFUSED", "Connection refused"},
	syscall.ECONNRESET:    {"ConnectionResetError", "ECONNRESET", "Connection reset by peer"},
	syscall.ECONNABORTED:  {"ConnectionAbortedError", "ECONNABORTED", "Software caused connection abort"},
	syscall.EPIPE:         {"BrokenPipeError", "EPIPE", "Broken pipe"},
	syscall.ENETUNREACH:   {"OSError", "ENETUNREACH", "Network is unreachable"},
	syscall.EHOSTUNREACH:  {"OSError", "EHOSTUNREACH", "No route to host"},
	syscall.EADDRNOTAVAIL: {"OSError", "EADDRNOTAVAIL", "Cannot assign requested address"},
	syscall.ETIMEDOUT:     {"TimeoutError", "ETIMEDOUT", "timed out"},
}

// classify turns a host error of a connect, read or write into the guest's exception.
func classify(err error) *Error {
	var ge *Error
	if errors.As(err, &ge) {
		return ge
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.Canceled) {
		return ErrTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrTimeout
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		if dns.IsNotFound {
			return ErrNotFound
		}
		return &Error{Type: "gaierror", Errno: "EAI_AGAIN", Message: "Temporary failure in name resolution"}
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if t, ok := errnoTexts[errno]; ok {
			return &Error{Type: t.typ, Errno: t.name, Message: t.text}
		}
		return &Error{Type: "OSError", Message: errno.Error()}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return &Error{Type: "ConnectionResetError", Errno: "ECONNRESET", Message: "Connection reset by peer"}
	}
	if errors.Is(err, net.ErrClosed) {
		return ErrClosed
	}
	return &Error{Type: "OSError", Message: "network error"}
}

// classifyTLS turns a handshake failure into ssl.SSLCertVerificationError or ssl.SSLError.
func classifyTLS(err error) *Error {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &hostname):
		return certError(fmt.Sprintf("Hostname mismatch, certificate is not valid for '%s'.", hostname.Host))
	case errors.As(err, &unknown):
		return certError("unable to get local issuer certificate (" + unknown.Error() + ")")
	case errors.As(err, &invalid):
		return certError(invalid.Error())
	case errors.As(err, &verify):
		return certError("certificate verify failed")
	}
	if e := classify(err); e.Type != "OSError" {
		return e // a timeout, a reset during the handshake
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return &Error{Type: "SSLError", Message: "tls alert: " + alert.Error()}
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return &Error{Type: "SSLError", Message: "wrong version number (the server did not answer with TLS)"}
	}
	return &Error{Type: "SSLError", Message: "TLS handshake failed: " + err.Error()}
}

func certError(reason string) *Error {
	return &Error{Type: "SSLCertVerificationError", Message: "certificate verify failed: " + reason}
}
