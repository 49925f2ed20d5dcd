package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Do sends one command to the server on a connection of its own and
// returns its reply: a status, an integer or a bulk string as text, or the
// server's error as an error. It is for what a test does to the server
// itself (INFO, REPLICAOF, CLUSTER INFO), not for the code under test,
// which has its own client. It takes at most 5 s; a reply of another type
// (an array) is an error.
func (s *Server) Do(args ...string) (string, error) {
	return do(s.addr, args...)
}

// do sends args as one RESP command to addr and reads one reply.
func do(addr string, args ...string) (string, error) {
	replies, err := doAll(addr, args)
	if err != nil {
		return "", err
	}
	return replies[0], nil
}

// doAll sends the commands to addr on one connection, one after another,
// and returns their replies; it stops at the first error. One connection
// matters for WAIT, which counts the writes of its own connection.
func doAll(addr string, cmds ...[]string) ([]string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	var replies []string
	for _, args := range cmds {
		var b strings.Builder
		fmt.Fprintf(&b, "*%d\r\n", len(args))
		for _, a := range args {
			fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			return nil, err
		}
		reply, err := readReply(r)
		if err != nil {
			return nil, err
		}
		replies = append(replies, reply)
	}
	return replies, nil
}

// maxBulk bounds a bulk reply: INFO and CLUSTER INFO are a few kilobytes.
const maxBulk = 1 << 20

// readReply reads one RESP reply that is not an array.
func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", errors.New("redistest: empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redistest: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n > maxBulk {
			return "", fmt.Errorf("redistest: bad bulk length %q", line)
		}
		if n < 0 {
			return "", nil // nil bulk
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("redistest: unexpected reply %q", line)
}

// field returns the value of name in an INFO-style reply ("name:value"
// lines), or "".
func field(info, name string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return v
		}
	}
	return ""
}

// until calls cond every 20 ms until it returns nil, for at most d, and
// returns its last error if it never did.
func until(d time.Duration, what string, cond func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redistest: %s not within %v: %w", what, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
