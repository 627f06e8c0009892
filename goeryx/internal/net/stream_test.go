package net

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// copyServer accepts connections on 127.0.0.1 and echoes what they send.
func copyServer(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

func connect(t *testing.T, s *Set, port int) *Conn {
	res := s.Connect(ConnectRequest{Host: "127.0.0.1", Port: port}, Wait{Until: time.Now().Add(5 * time.Second)})
	require.Nil(t, res.Err)
	c, gerr := s.Get(res.ID)
	require.Nil(t, gerr)
	return c
}

func soon() Wait { return Wait{Until: time.Now().Add(5 * time.Second)} }

// Direct reads and writes (the guest's goroutine on the socket itself), the read-ahead reader
// taking over in stream order, and every way a direct read is cut. Run with -race.
func TestDirectReadsAndTheReader(t *testing.T) {
	port := copyServer(t)
	s := NewSet(&Options{Policy: NewPolicy(nil, nil)})
	defer s.CloseAll()
	c := connect(t, s, port)

	n, gerr := c.Send([]byte("ping"), soon(), false)
	require.Nil(t, gerr)
	assert.Equal(t, 4, n)
	buf := make([]byte, 64)
	got := 0
	for got < 4 {
		k, eof, gerr := c.ReadInto(buf[got:], soon(), false)
		require.Nil(t, gerr)
		require.False(t, eof)
		got += k
	}
	assert.Equal(t, "ping", string(buf[:4]))

	// A deadline ends a direct read with a timeout; the connection stays usable.
	_, _, gerr = c.ReadInto(buf, Wait{Until: time.Now().Add(50 * time.Millisecond)}, false)
	assert.Equal(t, ErrTimeout, gerr)
	// The run's wake ends one at once.
	wake := make(chan struct{})
	go func() { time.Sleep(50 * time.Millisecond); close(wake) }()
	start := time.Now()
	_, _, gerr = c.ReadInto(buf, Wait{Wake: wake}, false)
	assert.Equal(t, ErrTimeout, gerr)
	assert.Less(t, time.Since(start), 5*time.Second)

	// Readable starts the reader; the stream continues in order through its queue.
	_, gerr = c.Send([]byte("abc"), soon(), false)
	require.Nil(t, gerr)
	require.Eventually(t, c.Readable, 5*time.Second, time.Millisecond)
	_, gerr = c.Send([]byte("def"), soon(), false)
	require.Nil(t, gerr)
	var out []byte
	for len(out) < 6 {
		parts, _, gerr := c.RecvPieces(6-len(out), soon(), false)
		require.Nil(t, gerr)
		for _, p := range parts {
			out = append(out, p...)
		}
	}
	assert.Equal(t, "abcdef", string(out))

	// Closing the run's connections cuts a direct read of another connection at once.
	c2 := connect(t, s, port)
	done := make(chan *Error, 1)
	go func() {
		_, _, gerr := c2.ReadInto(make([]byte, 8), Wait{}, false)
		done <- gerr
	}()
	time.Sleep(50 * time.Millisecond)
	s.CloseAll()
	select {
	case gerr := <-done:
		assert.Equal(t, ErrClosed, gerr)
	case <-time.After(5 * time.Second):
		t.Fatal("CloseAll did not cut the direct read")
	}
}

// A large send with nothing queued is written at once as far as the kernel takes it, and
// the rest is queued: all of it arrives, in order.
func TestDirectWriteThenQueue(t *testing.T) {
	port := copyServer(t)
	s := NewSet(&Options{Policy: NewPolicy(nil, nil)})
	defer s.CloseAll()
	c := connect(t, s, port)
	data := make([]byte, MaxPendingWrite)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sent := 0
	received := make(chan []byte, 1)
	go func() {
		var in []byte
		for len(in) < 4*len(data) {
			parts, _, gerr := c.RecvPieces(MaxRecv, soon(), false)
			if gerr != nil {
				break
			}
			for _, p := range parts {
				in = append(in, p...)
			}
		}
		received <- in
	}()
	for round := 0; round < 4; round++ {
		for off := 0; off < len(data); {
			n, gerr := c.Send(data[off:], soon(), false)
			require.Nil(t, gerr)
			off += n
			sent += n
		}
	}
	select {
	case in := <-received:
		require.Len(t, in, sent)
		for round := 0; round < 4; round++ {
			require.Equal(t, data, in[round*len(data):(round+1)*len(data)])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the echo did not come back")
	}
}
