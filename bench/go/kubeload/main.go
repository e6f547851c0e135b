// Command kubeload drives kube-apiserver for bench/apiserver.py: one workload per run,
// printed as one JSON line on stdout.
//
//	create: POST --total objects (ConfigMaps, or Pods that stay Pending) from --clients
//	        workers; with --watchers, as many watches of the collection run meanwhile and the
//	        time from each create's start to its ADDED event is reported too;
//	patch:  a JSON merge patch of each object (the API server's read-modify-write: a txn
//	        with a compare on the object's mod revision);
//	get:    GET of each object (a quorum read of the storage);
//	list:   --total GETs of the whole collection.
//
// The workers share one HTTP/2 connection, as client-go's do. The standard library only, so
// that it needs nothing beyond the Go toolchain.
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type result struct {
	Op         string  `json:"op"`
	Resource   string  `json:"resource"`
	Ops        int     `json:"ops"`
	Errors     int64   `json:"errors"`
	FirstErr   string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	OpsPerS    float64 `json:"ops_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P99Ms      float64 `json:"p99_ms"`
	Watchers   int     `json:"watchers,omitempty"`
	Events     int64   `json:"watch_events,omitempty"`
	WatchP50Ms float64 `json:"watch_p50_ms,omitempty"`
	WatchP99Ms float64 `json:"watch_p99_ms,omitempty"`
}

func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond)
}

type loader struct {
	client   *http.Client
	base     string
	resource string
	prefix   string
	value    string
	errors   atomic.Int64
	firstErr atomic.Value
}

func (l *loader) fail(err error) {
	l.errors.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

func (l *loader) body(i int) []byte {
	name := fmt.Sprintf("%s%06d", l.prefix, i)
	if l.resource == "pods" {
		return []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":%q,"labels":{"bench":"kubeload"}},`+
			`"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10"}],"terminationGracePeriodSeconds":0}}`, name))
	}
	return []byte(fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q},"data":{"v":%q}}`, name, l.value))
}

func (l *loader) patch(i int) []byte {
	if l.resource == "pods" {
		return []byte(fmt.Sprintf(`{"metadata":{"labels":{"round":"r%d"}}}`, i))
	}
	return []byte(fmt.Sprintf(`{"data":{"v":%q}}`, l.value[:len(l.value)-1]+"p"))
}

func (l *loader) do(method, url, contentType string, body []byte, want int) error {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := l.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(data))[:min(200, len(data))])
	}
	return nil
}

func (l *loader) op(kind string, i int) error {
	name := fmt.Sprintf("%s%06d", l.prefix, i)
	switch kind {
	case "create":
		return l.do("POST", l.base, "application/json", l.body(i), http.StatusCreated)
	case "patch":
		return l.do("PATCH", l.base+"/"+name, "application/merge-patch+json", l.patch(i), http.StatusOK)
	case "get":
		return l.do("GET", l.base+"/"+name, "", nil, http.StatusOK)
	case "list":
		return l.do("GET", l.base, "", nil, http.StatusOK)
	}
	return fmt.Errorf("unknown op %q", kind)
}

// resourceVersion of the collection now: watches start there, so they see only new objects.
func (l *loader) listRV() (string, error) {
	resp, err := l.client.Get(l.base + "?limit=1")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "", err
	}
	return list.Metadata.ResourceVersion, nil
}

func main() {
	server := flag.String("server", "", "https://host:port")
	ca := flag.String("ca", "", "CA certificate file")
	cert := flag.String("cert", "", "client certificate file")
	key := flag.String("key", "", "client key file")
	namespace := flag.String("namespace", "default", "namespace")
	resource := flag.String("resource", "configmaps", "configmaps or pods")
	kind := flag.String("op", "create", "create, patch, get or list")
	clients := flag.Int("clients", 16, "concurrent workers")
	total := flag.Int("total", 3000, "requests")
	prefix := flag.String("prefix", "bench-", "object name prefix")
	watchers := flag.Int("watchers", 0, "watches of the collection during a create run")
	valueSize := flag.Int("value-size", 256, "bytes of a ConfigMap's value")
	flag.Parse()

	pair, err := tls.LoadX509KeyPair(*cert, *key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "client certificate:", err)
		os.Exit(2)
	}
	pem, err := os.ReadFile(*ca)
	if err != nil {
		fmt.Fprintln(os.Stderr, "CA:", err)
		os.Exit(2)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 100,
	}
	l := &loader{
		client:   &http.Client{Transport: transport, Timeout: 60 * time.Second},
		base:     fmt.Sprintf("%s/api/v1/namespaces/%s/%s", *server, *namespace, *resource),
		resource: *resource,
		prefix:   *prefix,
		value:    strings.Repeat("v", *valueSize),
	}

	var started sync.Map // name -> time its create began
	var watchLat []time.Duration
	var watchMu sync.Mutex
	var events atomic.Int64
	var watchWG sync.WaitGroup
	var watchResps []*http.Response
	if *kind == "create" && *watchers > 0 {
		rv, err := l.listRV()
		if err != nil {
			fmt.Fprintln(os.Stderr, "list:", err)
			os.Exit(2)
		}
		watchClient := &http.Client{Transport: transport}
		for w := 0; w < *watchers; w++ {
			resp, err := watchClient.Get(l.base + "?watch=1&allowWatchBookmarks=false&resourceVersion=" + rv)
			if err != nil || resp.StatusCode != http.StatusOK {
				fmt.Fprintln(os.Stderr, "watch:", err, resp)
				os.Exit(2)
			}
			watchResps = append(watchResps, resp)
			watchWG.Add(1)
			go func(body io.Reader) {
				defer watchWG.Done()
				dec := json.NewDecoder(body)
				var lat []time.Duration
				for {
					var ev struct {
						Type   string `json:"type"`
						Object struct {
							Metadata struct {
								Name string `json:"name"`
							} `json:"metadata"`
						} `json:"object"`
					}
					if err := dec.Decode(&ev); err != nil {
						break
					}
					if ev.Type != "ADDED" {
						continue
					}
					events.Add(1)
					if t, ok := started.Load(ev.Object.Metadata.Name); ok {
						lat = append(lat, time.Since(t.(time.Time)))
					}
				}
				watchMu.Lock()
				watchLat = append(watchLat, lat...)
				watchMu.Unlock()
			}(resp.Body)
		}
	}

	var next atomic.Int64
	var mu sync.Mutex
	var all []time.Duration
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			for {
				i := int(next.Add(1) - 1)
				if i >= *total {
					break
				}
				t0 := time.Now()
				if *kind == "create" {
					started.Store(fmt.Sprintf("%s%06d", *prefix, i), t0)
				}
				if err := l.op(*kind, i); err != nil {
					l.fail(err)
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	res := result{
		Op: *kind, Resource: *resource, Ops: len(all), Errors: l.errors.Load(),
		Seconds: elapsed.Seconds(), OpsPerS: float64(len(all)) / elapsed.Seconds(),
		P50Ms: percentile(all, 0.5), P99Ms: percentile(all, 0.99),
	}
	if v := l.firstErr.Load(); v != nil {
		res.FirstErr = v.(string)
	}
	if len(watchResps) > 0 {
		// Every watcher should see every create; give the stragglers a bounded while.
		deadline := time.Now().Add(30 * time.Second)
		for events.Load() < int64(len(all)*len(watchResps)) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		for _, r := range watchResps {
			r.Body.Close()
		}
		watchWG.Wait()
		res.Watchers, res.Events = len(watchResps), events.Load()
		res.WatchP50Ms, res.WatchP99Ms = percentile(watchLat, 0.5), percentile(watchLat, 0.99)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
