// Command receiver is the webhook subscriber of the container end-to-end
// tests: it runs as a container on the test's network, takes the CloudEvents
// that notify delivers (POST /), checks their signature when it has the
// secret, and lists what it received (GET /received) so the test can count
// deliveries per event.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Received is one delivery as the receiver saw it.
type Received struct {
	ID       string `json:"id"`
	Delivery string `json:"delivery"`
	Type     string `json:"type"`
	Subject  string `json:"subject"`
	// Path is the URL path the delivery came to (one per subscription).
	Path string `json:"path"`
	// ChainID is the run the event belongs to (ce-chainid).
	ChainID string `json:"chain_id"`
	// SignatureOK is false when a secret is set and the signature is wrong.
	SignatureOK bool      `json:"signature_ok"`
	At          time.Time `json:"at"`
}

func main() {
	addr := flag.String("addr", ":8090", "listen address")
	flag.Parse()
	secret := os.Getenv("RECEIVER_SECRET")

	var (
		mu       sync.Mutex
		received []Received
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rec := Received{
			ID: r.Header.Get("Ce-Id"), Delivery: r.Header.Get("X-Sluice-Delivery"), Type: r.Header.Get("Ce-Type"), Subject: r.Header.Get("Ce-Subject"), ChainID: r.Header.Get("Ce-Chainid"), Path: r.URL.Path,
			SignatureOK: true, At: time.Now().UTC(),
		}
		if secret != "" {
			rec.SignatureOK = validSignature(secret, r.Header.Get("X-Sluice-Signature-256"), body)
		}
		mu.Lock()
		received = append(received, rec)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /received", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		out := append([]Received(nil), received...)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
		<-stop
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// validSignature checks "sha256=<hex>" against the HMAC-SHA256 of body.
func validSignature(secret, header string, body []byte) bool {
	sum, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sum)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}
