package goeryx

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strings"
)

// SecretPlaceholderPrefix starts every placeholder the guest sees instead of a secret's value
// (API.md §6.5); 32 lowercase hex characters (128 random bits) follow.
const SecretPlaceholderPrefix = "ERYX_SECRET_PLACEHOLDER_"

// redacted replaces placeholders in scrubbed channels.
const redacted = "[REDACTED]"

// secrets are a Sandbox's secrets as the guest knows them: real values never enter the guest.
// Only the network layer substitutes a real value, in HTTP/1 header values for allowed hosts.
type secrets struct {
	env      map[string]string // name → placeholder: the guest's os.environ entries
	byName   map[string]Secret
	scrubber *strings.Replacer // placeholder → [REDACTED]; nil when there are no secrets
	// echo replaces each real value (as is and as it appears in JSON text) by its
	// placeholder; nil when there are no secrets.
	echo *strings.Replacer
}

func newSecrets(list []Secret) (*secrets, error) {
	s := &secrets{env: map[string]string{}, byName: map[string]Secret{}}
	var pairs []string
	for _, sec := range list {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		ph := SecretPlaceholderPrefix + hex.EncodeToString(b[:])
		s.env[sec.Name] = ph
		s.byName[sec.Name] = sec
		pairs = append(pairs, ph, redacted)
	}
	if len(pairs) > 0 {
		s.scrubber = strings.NewReplacer(pairs...)
		// Longest values first: a value that contains another is replaced whole.
		names := make([]string, 0, len(s.byName))
		for name := range s.byName {
			names = append(names, name)
		}
		sort.Slice(names, func(i, j int) bool {
			return len(s.byName[names[i]].Value) > len(s.byName[names[j]].Value)
		})
		var echo []string
		for _, name := range names {
			sec := s.byName[name]
			echo = append(echo, sec.Value, s.env[name])
			if j, err := json.Marshal(sec.Value); err == nil {
				if quoted := string(j[1 : len(j)-1]); quoted != sec.Value {
					echo = append(echo, quoted, s.env[name])
				}
			}
		}
		s.echo = strings.NewReplacer(echo...)
	}
	return s, nil
}

// scrub replaces placeholders when on is set.
func (s *secrets) scrub(text string, on bool) string {
	if !on || s.scrubber == nil {
		return text
	}
	return s.scrubber.Replace(text)
}

// scrubBytes is scrub for file writes; it returns b itself when nothing changes.
func (s *secrets) scrubBytes(b []byte) []byte {
	if s.scrubber == nil || !strings.Contains(string(b), SecretPlaceholderPrefix) {
		return b
	}
	return []byte(s.scrubber.Replace(string(b)))
}
