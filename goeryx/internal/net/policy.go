// Package net owns the guest's network connections: the host policy of API.md §3.3 (names
// and every resolved address checked against the patterns and the address guards), the
// connections of one run with their limits, timeouts and bounded buffers, and TLS terminated
// on the host. The engine's root package routes the guest's host calls here; nothing in this
// package trusts the guest.
package net

import (
	"net/netip"
	"strings"
)

// MaxHostLength bounds a host name the guest may ask for (DNS: 253 characters).
const MaxHostLength = 253

// Policy is a compiled NetConfig host policy (API.md §3.2, §3.3).
type Policy struct {
	allowed  []string // lowercased patterns
	blocked  []string
	loopback bool // the loopback address guard is on
	private  bool // the private address guard is on
}

// NewPolicy compiles the allowed and blocked host patterns.
func NewPolicy(allowed, blocked []string) *Policy {
	p := &Policy{}
	for _, a := range allowed {
		p.allowed = append(p.allowed, strings.ToLower(a))
	}
	for _, b := range blocked {
		b = strings.ToLower(b)
		p.blocked = append(p.blocked, b)
		switch b {
		case "localhost", "*.localhost", "127.*", "[::1]":
			p.loopback = true
		case "10.*", "192.168.*", "169.254.*":
			p.private = true
		default:
			if strings.HasPrefix(b, "172.") && strings.HasSuffix(b, ".*") {
				switch b[4 : len(b)-2] {
				case "16", "17", "18", "19", "20", "21", "22", "23", "24", "25", "26", "27", "28", "29", "30", "31":
					p.private = true
				}
			}
		}
	}
	return p
}

// Match reports whether the glob pattern matches the whole of s: `*` matches any run of
// characters (dots included), with full backtracking; no other character is special. Both
// are compared as given (callers lowercase them).
func Match(pattern, s string) bool {
	// The classic two-pointer glob: on a mismatch, retry from the last star one character
	// further. Linear in practice, O(len(p)·len(s)) at worst: no exponential backtracking.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}

// Normalise returns the canonical form of a host the guest asked for (§3.3 step 1):
// lowercase, no trailing dot, IPv6 literals bracketed and compressed. ok is false for a host
// that is not a syntactically possible name or address (the guest then sees a lookup failure).
// addr is set when the host is an IP literal.
func Normalise(host string) (norm string, addr netip.Addr, ok bool) {
	h := strings.ToLower(host)
	if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", netip.Addr{}, false
		}
		return "[" + a.String() + "]", a, true
	}
	if strings.Contains(h, ":") {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", netip.Addr{}, false
		}
		return "[" + a.String() + "]", a, true
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > MaxHostLength {
		return "", netip.Addr{}, false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", netip.Addr{}, false
		}
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() {
		return a.String(), a, true
	}
	return h, netip.Addr{}, true
}

// CheckName applies §3.3 steps 2 and 3 to a normalised host.
func (p *Policy) CheckName(norm string) *Error {
	if matchAny(p.blocked, norm) {
		return permission("host '%s' is blocked", norm)
	}
	if len(p.allowed) > 0 && !matchAny(p.allowed, norm) {
		return permission("host '%s' is not in the allowed hosts list", norm)
	}
	return nil
}

// CheckAddr applies §3.3 step 4 to one resolved address of host: its canonical text (and the
// IPv4 form of an IPv4-mapped address) against the blocked patterns, and the address guards.
func (p *Policy) CheckAddr(norm string, a netip.Addr) *Error {
	a = a.WithZone("")
	v4 := a.Unmap()
	texts := []string{addrText(a)}
	if a.Is4In6() {
		texts = append(texts, v4.String())
	}
	blocked := false
	for _, t := range texts {
		if matchAny(p.blocked, t) {
			blocked = true
		}
	}
	if !blocked && p.loopback && isLoopback(v4) {
		blocked = true
	}
	if !blocked && p.private && isPrivate(v4) {
		blocked = true
	}
	if blocked {
		return permission("host '%s' resolves to blocked address %s", norm, v4.String())
	}
	return nil
}

// addrText is the canonical text of an address: dotted IPv4 or bracketed IPv6.
func addrText(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return "[" + a.String() + "]"
}

var (
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")
	private   = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("0.0.0.0/8"),
		netip.MustParsePrefix("100.64.0.0/10"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("fc00::/7"),
	}
)

// isLoopback and isPrivate take an unmapped address (IPv4-mapped ones are checked in their
// IPv4 form).
func isLoopback(a netip.Addr) bool {
	return loopback4.Contains(a) || a == netip.IPv6Loopback()
}

func isPrivate(a netip.Addr) bool {
	if a == netip.IPv6Unspecified() {
		return true
	}
	for _, p := range private {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
