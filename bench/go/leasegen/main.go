// Command leasegen drives many leases into an etcd endpoint for bench/leases.py.
//
// Phases, each printed as one JSON line on stdout:
//
//	grant:     --leases LeaseGrant(--ttl) calls from --clients workers, each followed by a Put
//	           of one key attached to the new lease (the shape of kube-apiserver's events);
//	keepalive: one LeaseKeepAlive round trip for every lease granted, on one stream per
//	           worker (as a client library keeps its leases alive).
//
// etcd's own benchmark tool only keeps one lease per client alive, so it cannot build a
// million leases; this does, with the Go client the tool uses.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

type phaseResult struct {
	Phase     string  `json:"phase"`
	Ops       int     `json:"ops"`
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	Seconds   float64 `json:"seconds"`
	OpsPerS   float64 `json:"ops_per_s"`
	P50Ms     float64 `json:"p50_ms"`
	P99Ms     float64 `json:"p99_ms"`
	AttachP99 float64 `json:"attach_p99_ms,omitempty"`
}

type recorder struct {
	mu       sync.Mutex
	lat      []time.Duration
	attach   []time.Duration
	errors   atomic.Int64
	firstErr atomic.Value
}

func (r *recorder) fail(err error) {
	r.errors.Add(1)
	r.firstErr.CompareAndSwap(nil, err.Error())
}

func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(q * float64(len(d)-1))
	return float64(d[i]) / float64(time.Millisecond)
}

func (r *recorder) result(phase string, elapsed time.Duration) phaseResult {
	res := phaseResult{
		Phase:   phase,
		Ops:     len(r.lat),
		Errors:  r.errors.Load(),
		Seconds: elapsed.Seconds(),
		OpsPerS: float64(len(r.lat)) / elapsed.Seconds(),
		P50Ms:   percentile(r.lat, 0.50),
		P99Ms:   percentile(r.lat, 0.99),
	}
	if len(r.attach) > 0 {
		res.AttachP99 = percentile(r.attach, 0.99)
	}
	if v := r.firstErr.Load(); v != nil {
		res.FirstErr = v.(string)
	}
	return res
}

func emit(res phaseResult) {
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	leases := flag.Int("leases", 100000, "leases to grant")
	ttl := flag.Int64("ttl", 600, "TTL of every lease, seconds")
	clients := flag.Int("clients", 64, "concurrent workers")
	conns := flag.Int("conns", 16, "gRPC connections")
	prefix := flag.String("prefix", "/leasegen/", "prefix of the attached keys")
	valSize := flag.Int("val-size", 64, "bytes of each attached value")
	flag.Parse()

	var cls []*clientv3.Client
	for i := 0; i < *conns; i++ {
		eps := strings.Split(*endpoints, ",")
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{eps[i%len(eps)]},
			DialTimeout: 10 * time.Second,
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial:", err)
			os.Exit(2)
		}
		defer cli.Close()
		cls = append(cls, cli)
	}
	value := strings.Repeat("v", *valSize)
	ids := make([]clientv3.LeaseID, *leases)
	granted := make([]bool, *leases)

	// grant + attach
	var next atomic.Int64
	rec := &recorder{}
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(cli *clientv3.Client) {
			defer wg.Done()
			var lat, att []time.Duration
			for {
				i := int(next.Add(1) - 1)
				if i >= *leases {
					break
				}
				t0 := time.Now()
				resp, err := cli.Grant(context.Background(), *ttl)
				if err != nil {
					rec.fail(err)
					continue
				}
				t1 := time.Now()
				lat = append(lat, t1.Sub(t0))
				ids[i], granted[i] = resp.ID, true
				key := fmt.Sprintf("%s%08d", *prefix, i)
				if _, err := cli.Put(context.Background(), key, value, clientv3.WithLease(resp.ID)); err != nil {
					rec.fail(err)
					continue
				}
				att = append(att, time.Since(t1))
			}
			rec.mu.Lock()
			rec.lat = append(rec.lat, lat...)
			rec.attach = append(rec.attach, att...)
			rec.mu.Unlock()
		}(cls[w%len(cls)])
	}
	wg.Wait()
	emit(rec.result("grant", time.Since(began)))

	// keepalive: one round trip per lease, one stream per worker
	next.Store(0)
	rec = &recorder{}
	began = time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(cli *clientv3.Client) {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stream, err := pb.NewLeaseClient(cli.ActiveConnection()).LeaseKeepAlive(ctx)
			if err != nil {
				rec.fail(err)
				return
			}
			var lat []time.Duration
			for {
				i := int(next.Add(1) - 1)
				if i >= *leases {
					break
				}
				if !granted[i] {
					continue
				}
				t0 := time.Now()
				if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: int64(ids[i])}); err != nil {
					rec.fail(err)
					return
				}
				resp, err := stream.Recv()
				if err != nil {
					rec.fail(err)
					return
				}
				if resp.TTL <= 0 {
					rec.fail(fmt.Errorf("lease %x not found on keepalive", ids[i]))
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			rec.mu.Lock()
			rec.lat = append(rec.lat, lat...)
			rec.mu.Unlock()
		}(cls[w%len(cls)])
	}
	wg.Wait()
	emit(rec.result("keepalive", time.Since(began)))
}
