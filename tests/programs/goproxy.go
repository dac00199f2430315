// SPDX-License-Identifier: Apache-2.0
//
// goproxy: the smallest Go TCP proxy, for tests/programs/run-programs.
//
// It listens on -listen and, for every connection it accepts, dials
// -backend and copies both ways with io.Copy. Between two *net.TCPConn,
// io.Copy calls (*net.TCPConn).ReadFrom, which on Linux moves the bytes
// with splice(2) (socket -> pipe -> socket): the way of reading a socket
// that does not see data sockaccel redirected into it
// (docs/compatibility.md, "splice and tee"). A program like this one must
// therefore stay outside sockaccel's scope; run-programs checks that, kept
// outside, it passes every byte while the programs around it are
// accelerated.
//
// Once listening it prints one line, "listening 127.0.0.1:PORT", on stdout.
// For each connection it logs on stderr the bytes copied each way.
// Standard library only.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	backend := flag.String("backend", "", "address to dial for each connection (required)")
	flag.Parse()
	if *backend == "" {
		fmt.Fprintln(os.Stderr, "goproxy: -backend is required")
		os.Exit(2)
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("goproxy: ")

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("listen %s: %v", *listen, err)
	}
	fmt.Printf("listening %s\n", ln.Addr())
	os.Stdout.Sync()

	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatalf("accept: %v", err)
		}
		go serve(c.(*net.TCPConn), *backend)
	}
}

// serve proxies one client connection to a new backend connection until
// both directions have reached EOF.
func serve(client *net.TCPConn, backend string) {
	defer client.Close()
	b, err := net.Dial("tcp", backend)
	if err != nil {
		log.Printf("dial %s: %v", backend, err)
		return
	}
	server := b.(*net.TCPConn)
	defer server.Close()

	var wg sync.WaitGroup
	var up, down int64
	var upErr, downErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		// server.ReadFrom(client): splice from the client's socket.
		up, upErr = io.Copy(server, client)
		server.CloseWrite()
	}()
	go func() {
		defer wg.Done()
		// client.ReadFrom(server): splice from the backend's socket.
		down, downErr = io.Copy(client, server)
		client.CloseWrite()
	}()
	wg.Wait()
	log.Printf("%s: %d bytes to the backend (err %v), %d bytes to the client (err %v)",
		client.RemoteAddr(), up, upErr, down, downErr)
}
