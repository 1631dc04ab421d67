// Package faultproxy is an HTTP proxy between the Cosmos SDK and a Cosmos-protocol server that injects faults:
// added latency, dropped connections, 429 with retry-after, 503, 408, partitions of one client, responses lost
// after the server committed a write, and point reads answered by a lagging replica (see Replicas).
//
// Each client gets a listener of its own, so one client can be partitioned alone. After reading the account
// (GET /), the SDK sends every request to the endpoint the account advertises, so the proxy rewrites that answer
// to advertise the listener; otherwise it would be bypassed without anyone noticing. Counts says how many
// requests passed through, so a run can prove it was not.
package faultproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Faults are the probabilities (0..1) of each fault per document request, and the latency added to every
// request. At most one of the probabilistic faults applies to a request.
type Faults struct {
	Latency       time.Duration
	LatencyJitter time.Duration
	Drop          float64 // close the connection without an answer; the request is not applied
	Throttle      float64 // 429 with x-ms-retry-after-ms; not applied
	Unavailable   float64 // 503; not applied
	Timeout       float64 // 408; not applied
	LostReply     float64 // writes only: applied by the server, then the connection is closed
	StaleRead     float64 // point reads only: answered by a replica one write behind, where the session token allows
}

// Proxy forwards to one target.
type Proxy struct {
	target *url.URL
	client *http.Client

	replicas *Replicas

	mu          sync.Mutex
	faults      Faults
	partitioned map[string]bool
	counts      map[string]int64
	servers     []*http.Server
	observe     func(name string, r *http.Request, status int)
}

// Observe has f called after each request that the target answered, with the client's name and the status; a
// faulted request is not seen. tools/bench counts requests by client, kind and status with it.
func (p *Proxy) Observe(f func(name string, r *http.Request, status int)) {
	p.mu.Lock()
	p.observe = f
	p.mu.Unlock()
}

// New proxies to target, such as http://127.0.0.1:8081/.
func New(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: bad target %q", target)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	return &Proxy{target: u, client: &http.Client{Transport: tr}, replicas: NewReplicas(), partitioned: map[string]bool{},
		counts: map[string]int64{}}, nil
}

// Listen opens a loopback listener for the client called name and returns its base URL.
func (p *Proxy) Listen(name string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	base := "http://" + ln.Addr().String() + "/"
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(name, ln.Addr().String(), w, r) }),
		ReadHeaderTimeout: 10 * time.Second}
	p.mu.Lock()
	p.servers = append(p.servers, srv)
	p.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return base, nil
}

// SetFaults replaces the fault probabilities.
func (p *Proxy) SetFaults(f Faults) {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
}

// Partition cuts (or restores) one client off: its requests hang until the client gives up.
func (p *Proxy) Partition(name string, on bool) {
	p.mu.Lock()
	p.partitioned[name] = on
	p.mu.Unlock()
}

// Counts returns how many requests passed ("passed", "account", "documents", and among documents "queries") and how many faults of each kind
// were injected.
func (p *Proxy) Counts() map[string]int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int64, len(p.counts))
	for k, v := range p.counts {
		out[k] = v
	}
	return out
}

func (p *Proxy) count(k string) {
	p.mu.Lock()
	p.counts[k]++
	p.mu.Unlock()
}

// Close stops every listener.
func (p *Proxy) Close() {
	p.mu.Lock()
	servers := p.servers
	p.servers = nil
	p.mu.Unlock()
	for _, s := range servers {
		_ = s.Close()
	}
}

func isWrite(r *http.Request) bool {
	if !strings.Contains(r.URL.Path, "/docs") {
		return false
	}
	switch r.Method {
	case http.MethodPut, http.MethodDelete, http.MethodPatch:
		return true
	case http.MethodPost:
		return !strings.HasPrefix(r.Header.Get("Content-Type"), "application/query+json")
	}
	return false
}

func (p *Proxy) serve(name, self string, w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	f, cut := p.faults, p.partitioned[name]
	p.mu.Unlock()
	if cut {
		p.count("partitioned")
		select { // a partition drops packets: the client hears nothing until it gives up
		case <-r.Context().Done():
		case <-time.After(2 * time.Minute):
		}
		hang(w)
		return
	}
	if f.Latency > 0 || f.LatencyJitter > 0 {
		d := f.Latency
		if f.LatencyJitter > 0 {
			d += time.Duration(rand.Int64N(int64(f.LatencyJitter)))
		}
		p.count("latency")
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	doc := strings.Contains(r.URL.Path, "/docs")
	if doc {
		x := rand.Float64()
		switch {
		case x < f.Drop:
			p.count("drop")
			hang(w)
			return
		case x < f.Drop+f.Throttle:
			p.count("throttle")
			reply(w, http.StatusTooManyRequests, "TooManyRequests", map[string]string{"x-ms-retry-after-ms": "50", "x-ms-substatus": "3200"})
			return
		case x < f.Drop+f.Throttle+f.Unavailable:
			p.count("unavailable")
			reply(w, http.StatusServiceUnavailable, "ServiceUnavailable", nil)
			return
		case x < f.Drop+f.Throttle+f.Unavailable+f.Timeout:
			p.count("timeout408")
			reply(w, http.StatusRequestTimeout, "RequestTimeout", nil)
			return
		case x < f.Drop+f.Throttle+f.Unavailable+f.Timeout+f.LostReply && isWrite(r):
			p.count("lostReply")
			reqBody, resp, err := p.forward(r)
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				p.replicas.Observe(r, reqBody, resp.StatusCode, resp.Header, body)
			}
			hang(w)
			return
		case x < f.Drop+f.Throttle+f.Unavailable+f.Timeout+f.LostReply+f.StaleRead:
			if status, body, header, ok := p.replicas.Lagging(r); ok {
				p.count("staleRead")
				for k, vs := range header {
					w.Header()[k] = vs
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				w.WriteHeader(status)
				_, _ = w.Write(body)
				return
			}
		}
	}
	reqBody, resp, err := p.forward(r)
	if err != nil {
		p.count("upstreamError")
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		hang(w)
		return
	}
	p.count("passed")
	p.mu.Lock()
	observe := p.observe
	p.mu.Unlock()
	if observe != nil {
		observe(name, r, resp.StatusCode)
	}
	if doc {
		p.count("documents")
		if r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/query+json") {
			p.count("queries")
		}
		p.replicas.Observe(r, reqBody, resp.StatusCode, resp.Header, body)
	}
	if r.Method == http.MethodGet && (r.URL.Path == "/" || r.URL.Path == "") {
		p.count("account")
		// Advertise this listener, over http, wherever the server advertises itself.
		body = bytes.ReplaceAll(body, []byte("https://"+p.target.Host), []byte("http://"+self))
		body = bytes.ReplaceAll(body, []byte("http://"+p.target.Host), []byte("http://"+self))
	}
	for k, vs := range resp.Header {
		if strings.EqualFold(k, "Content-Length") {
			continue
		}
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
}

// forward sends r to the target and returns the request's body beside the answer.
func (p *Proxy) forward(r *http.Request) ([]byte, *http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, nil, err
	}
	u := *p.target
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	// Forward even if the client gives up: a committed write must stay committed, as on a real network.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), bytes.NewReader(body))
	if err != nil {
		cancel()
		return nil, nil, err
	}
	out.Header = r.Header.Clone()
	out.Host = p.target.Host
	resp, err := p.client.Do(out)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return body, resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// hang closes the client's connection without an answer.
func hang(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // a reset, as a dropped connection looks
	}
	_ = conn.Close()
}

func reply(w http.ResponseWriter, status int, code string, headers map[string]string) {
	for k, v := range headers {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"code":%q,"message":"injected by faultproxy"}`, code)
}
