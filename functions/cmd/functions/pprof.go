package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"
)

// PprofAddrEnv switches on net/http/pprof: ORCHARD_PPROF_ADDR=127.0.0.1:6060
// serves /debug/pprof/ on that address, a listener of its own. It is off
// when unset (the deployed services never set it), and only loopback
// addresses are accepted: profiles reveal code paths, command lines and
// memory contents, so they never share the public port the Functions
// Framework serves (which uses a mux of its own, not
// http.DefaultServeMux where net/http/pprof also registers itself).
const PprofAddrEnv = "ORCHARD_PPROF_ADDR"

// startPprof starts the profiling listener if PprofAddrEnv asks for one.
// It lives as long as the process.
func startPprof(log *slog.Logger) error {
	addr := os.Getenv(PprofAddrEnv)
	if addr == "" {
		return nil
	}
	lis, err := listenLoopback(addr)
	if err != nil {
		return fmt.Errorf("%s=%q: %w", PprofAddrEnv, addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("functions: pprof listener", "error", err.Error())
		}
	}()
	log.Warn("functions: net/http/pprof enabled", "addr", lis.Addr().String(), "env", PprofAddrEnv)
	return nil
}

// listenLoopback listens on addr only if its host is a loopback address.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if host != "localhost" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return nil, errors.New("the pprof listener must be on a loopback address such as 127.0.0.1:6060")
		}
	}
	return net.Listen("tcp", addr)
}
