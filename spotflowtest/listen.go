package spotflowtest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"time"
)

// readHeaderTimeout bounds how long a connection may take to send its
// request headers, so a client that never finishes them cannot hold a
// connection (and Shutdown) for ever.
const readHeaderTimeout = 30 * time.Second

// WithListener makes [NewServer] serve on l instead of a new listener on
// 127.0.0.1 with a port of its own, so that a server can listen on a chosen
// address, as cmd/spotflow-mock does with its -addr flag. The server owns l
// from then on: Close and Shutdown close it. Server.URL names the host of
// l's address, or 127.0.0.1 when l listens on every address (0.0.0.0, ::),
// so that URL is one a client on the same machine can reach.
func WithListener(l net.Listener) Option {
	return optionFunc(func(c *config) { c.listener = l })
}

// Shutdown stops the server gracefully, as [http.Server.Shutdown] does: it
// stops accepting connections, lets every request in flight finish and be
// answered (an injected latency included), and ends the waits of the control
// endpoints (see [ControlPrefix]); then it closes the server as Close does,
// stopping the webhooks. If ctx is done first, Shutdown closes the server at
// once, as Close does, aborting the requests still sleeping for latency, and
// returns ctx's error. It is safe to call with Close, and more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drainOnce.Do(func() { close(s.draining) })
	err := s.ts.Config.Shutdown(ctx)
	s.Close()
	return err
}

// startHTTP serves h on l, or on a new listener on 127.0.0.1 when l is nil.
func startHTTP(l net.Listener, h http.Handler) *httptest.Server {
	var ts *httptest.Server
	if l == nil {
		ts = httptest.NewUnstartedServer(h)
	} else {
		ts = &httptest.Server{Listener: l, Config: &http.Server{Handler: h}}
	}
	ts.Config.ReadHeaderTimeout = readHeaderTimeout
	ts.Start()
	return ts
}

// reachableURL is "http://host:port" for a listener's address, with
// 127.0.0.1 in place of an address that means every address: a client on
// this machine cannot dial 0.0.0.0 everywhere, and Go listens on both
// IPv4 and IPv6 for either wildcard.
func reachableURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}
