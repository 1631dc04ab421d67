//go:build js && wasm

package jsfetch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall/js"
)

// Transport sends requests with the global fetch. The zero value is ready to use; it is safe for concurrent use.
type Transport struct{}

// Do sends req and returns the response with its body read in full. It implements azcore's policy.Transporter.
func (Transport) Do(req *http.Request) (*http.Response, error) {
	fetch := js.Global().Get("fetch")
	if fetch.Type() != js.TypeFunction {
		return nil, errors.New("jsfetch: this JavaScript host has no fetch; pass Options.Transport")
	}
	opts := js.Global().Get("Object").New()
	opts.Set("method", req.Method)
	headers := js.Global().Get("Headers").New()
	for name, values := range req.Header {
		for _, v := range values {
			headers.Call("append", name, v)
		}
	}
	opts.Set("headers", headers)
	if req.Body != nil && req.Body != http.NoBody {
		body, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(body) > 0 {
			buf := js.Global().Get("Uint8Array").New(len(body))
			js.CopyBytesToJS(buf, body)
			opts.Set("body", buf)
		}
	}
	abort := js.Global().Get("AbortController").New()
	opts.Set("signal", abort.Get("signal"))

	// Abort when the request's context ends; the promise then settles with an AbortError, and awaiting it
	// keeps the callbacks alive until it has.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-req.Context().Done():
			abort.Call("abort")
		case <-stop:
		}
	}()
	fail := func(step string, err error) (*http.Response, error) {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("fetch %s %s: %s: %w", req.Method, req.URL.Redacted(), step, err)
	}
	resp, err := await(fetch.Invoke(req.URL.String(), opts))
	if err != nil {
		return fail("request", err)
	}
	buf, err := await(resp.Call("arrayBuffer"))
	if err != nil {
		return fail("response body", err)
	}
	data := js.Global().Get("Uint8Array").New(buf)
	body := make([]byte, data.Get("length").Int())
	js.CopyBytesToGo(body, data)

	code := resp.Get("status").Int()
	out := &http.Response{
		Status:     fmt.Sprintf("%d %s", code, http.StatusText(code)),
		StatusCode: code,
		Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
	each := js.FuncOf(func(_ js.Value, args []js.Value) any {
		out.Header.Add(args[1].String(), args[0].String())
		return nil
	})
	resp.Get("headers").Call("forEach", each)
	each.Release()
	// fetch has already decoded a compressed body: the headers describe bytes we never saw.
	if out.Header.Get("Content-Encoding") != "" {
		out.Header.Del("Content-Encoding")
		out.Header.Del("Content-Length")
	}
	return out, nil
}

// await blocks the calling goroutine (the JavaScript event loop runs meanwhile) until the promise settles.
func await(promise js.Value) (js.Value, error) {
	type settled struct {
		v   js.Value
		err error
	}
	ch := make(chan settled, 1)
	resolve := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- settled{v: args[0]}
		return nil
	})
	reject := js.FuncOf(func(_ js.Value, args []js.Value) any {
		ch <- settled{err: jsError(args[0])}
		return nil
	})
	defer resolve.Release()
	defer reject.Release()
	promise.Call("then", resolve, reject)
	s := <-ch
	return s.v, s.err
}

// jsError renders a rejection, with its cause (Node's fetch says "fetch failed" and puts the reason there).
func jsError(v js.Value) error {
	if v.Type() != js.TypeObject {
		return errors.New(v.String())
	}
	msg := v.Call("toString").String()
	for cause := v.Get("cause"); cause.Type() == js.TypeObject || cause.Type() == js.TypeString; cause = cause.Get("cause") {
		if cause.Type() == js.TypeString {
			msg += ": " + cause.String()
			break
		}
		msg += ": " + cause.Call("toString").String()
	}
	return errors.New(strings.TrimSpace(msg))
}
