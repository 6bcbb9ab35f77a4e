package host

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/test/testkit"
	"golang.org/x/crypto/bcrypt"
)

// defaultMetrics is where `run` serves without --web.listen-address.
const defaultMetrics = "127.0.0.1:9089"

func promtool(t *testing.T) string {
	t.Helper()
	p, err := testkit.Promtool("test-host")
	return testkit.Must(t, p, err)
}

// TestPromtoolChecksLiveScrape scrapes a daemon that has seen a carrier
// change, a withdrawn route and traffic, so most series exist, and feeds
// the exposition to `promtool check metrics`, which must print nothing.
func TestPromtoolChecksLiveScrape(t *testing.T) {
	tool := promtool(t)
	ns, peer := newNetns(t), newNetns(t)
	ns.ip(t, "link", "add", "lbm0", "type", "veth", "peer", "name", "lbm1", "netns", string(peer))
	ns.ip(t, "addr", "add", "10.88.0.1/24", "dev", "lbm0")
	ns.ip(t, "link", "set", "lbm0", "up")
	peer.ip(t, "link", "set", "lbm1", "up")
	waitFor(t, "lbm0 carrier", func() bool { return carrierOf(t, ns, "lbm0") })
	ns.ip(t, "route", "add", "203.0.113.0/24", "via", "10.88.0.2", "dev", "lbm0")
	ns.start(t, "run", "--interfaces", "lbm0", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir())
	peer.ip(t, "link", "set", "lbm1", "down")
	waitFor(t, "the route to be withdrawn", func() bool {
		v, _ := sample(t, ns.scrape(t, defaultMetrics), `linkbeat_routes_withdrawn{interface="lbm0"}`)
		return v >= 2 // the static route and the connected one
	})

	body := ns.scrape(t, defaultMetrics)
	for _, s := range []string{`linkbeat_interface_carrier_changes_total{direction="down",interface="lbm0"}`,
		`linkbeat_interface_transmit_packets_total{interface="lbm0"}`, `linkbeat_build_info{`, `linkbeat_carrier_source_info{`,
		`linkbeat_tc_mechanism_info{`, `linkbeat_reaction_latency_seconds_bucket{`, `linkbeat_resyncs_total{reason="start"}`} {
		if !strings.Contains(body, s) {
			t.Errorf("scrape lacks %s", s)
		}
	}
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPrometheusScrapesLinkbeat runs Debian's Prometheus next to linkbeat
// in a netns, makes three carrier flaps, and asks Prometheus' HTTP API for
// up and for the carrier-change counters.
func TestPrometheusScrapesLinkbeat(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus missing: run scripts/install-deps.sh (make test-host does)")
	}
	ns := newNetns(t)
	ns.vethPair(t, "lbp0", "lbp1")
	waitFor(t, "lbp0 carrier", func() bool { return carrierOf(t, ns, "lbp0") })
	ns.start(t, "run", "--interfaces", "lbp0", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir())

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: linkbeat
    static_configs:
      - targets: ['%s']
`, defaultMetrics)), 0o644)
	const promAddr = "127.0.0.1:9090"
	prom := exec.Command("ip", "netns", "exec", string(ns), bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr)
	var logs testkit.Buffer
	prom.Stdout, prom.Stderr = &logs, &logs
	if err := prom.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		prom.Process.Kill()
		prom.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	base := "http://" + promAddr
	waitLong(t, 30*time.Second, "prometheus ready", func() bool {
		c, err := ns.dial(t.Context(), "tcp", promAddr)
		if err != nil {
			return false
		}
		c.Close()
		code, _ := ns.get(t, ns.client(nil), base+"/-/ready", "", "")
		return code == http.StatusOK
	})

	const flaps = 3
	for i := range flaps {
		ns.ip(t, "link", "set", "lbp1", "down")
		waitFor(t, fmt.Sprintf("flap %d down", i), func() bool { return !carrierOf(t, ns, "lbp0") })
		ns.ip(t, "link", "set", "lbp1", "up")
		waitFor(t, fmt.Sprintf("flap %d up", i), func() bool { return carrierOf(t, ns, "lbp0") })
	}
	want := fmt.Sprint(flaps)
	for _, q := range []struct{ query, want string }{
		{`up{job="linkbeat"}`, "1"},
		{`linkbeat_interface_carrier_changes_total{job="linkbeat",interface="lbp0",direction="down"}`, want},
		{`linkbeat_interface_carrier_changes_total{job="linkbeat",interface="lbp0",direction="up"}`, want},
	} {
		var got []string
		waitLong(t, 30*time.Second, q.query+" == "+q.want, func() bool {
			got = ns.promQuery(t, base, q.query)
			return len(got) == 1 && got[0] == q.want
		})
		t.Logf("%s = %v", q.query, got)
	}
}

// TestWebConfigTLSAndBasicAuth serves metrics over TLS with basic auth
// from an exporter-toolkit web config: without credentials, or with wrong
// ones, or in plain HTTP, the scrape is refused; with them it works.
func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	ns := newNetns(t)
	ns.vethPair(t, "lbw0", "lbw1")
	dir := t.TempDir()
	certPEM := writeSelfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  prom: %s\n",
		filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), hash)), 0o600)
	const addr = "127.0.0.1:9443"
	ns.start(t, "run", "--interfaces", "lbw0", "--bpffs-dir", pinDir(t), "--state-dir", t.TempDir(),
		"--web.listen-address", addr, "--web.config.file", webCfg)

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(certPEM)
	c := ns.client(&tls.Config{RootCAs: roots})
	url := "https://" + addr + "/metrics"
	if code, _ := ns.get(t, c, url, "", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: HTTP %d, want 401", code)
	}
	if code, _ := ns.get(t, c, url, "prom", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: HTTP %d, want 401", code)
	}
	if code, _ := ns.get(t, ns.client(nil), "http://"+addr+"/metrics", "prom", "s3cret"); code == http.StatusOK {
		t.Errorf("plain HTTP to the TLS port was served")
	}
	code, body := ns.get(t, c, url, "prom", "s3cret")
	if code != http.StatusOK || !strings.Contains(body, "linkbeat_build_info{") {
		t.Fatalf("authenticated TLS scrape: HTTP %d\n%.300s", code, body)
	}
}

// writeSelfSigned writes cert.pem and key.pem for 127.0.0.1 into dir and
// returns the certificate.
func writeSelfSigned(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "linkbeat test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	os.WriteFile(filepath.Join(dir, "cert.pem"), cert, 0o644)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return cert
}

// waitLong is waitFor with a deadline of its own, for outside programs
// that take longer than linkbeat to act (Prometheus' start, its scrapes).
func waitLong(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
