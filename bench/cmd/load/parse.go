package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// clientRun is the summary line a stage's client prints in load mode
// (internal/loadgen):
//
//	calls=20000 ok=20000 errors=0 mismatches=0 elapsed=192ms rps=104051 p50=457µs p99=4.516ms
type clientRun struct {
	Calls, OK, Errors, Mismatches int
	Elapsed                       time.Duration
	RPS                           float64
	P50, P99                      time.Duration
}

// parseClientOutput finds the summary line in a client's output and reads
// it. It fails if the line is missing or incomplete, or if any call failed
// or came back with a wrong sum: figures of a run that did not do its work
// are not figures.
func parseClientOutput(out string) (clientRun, error) {
	var line string
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "calls=") {
			line = strings.TrimSpace(l) // the last one wins; there is one
		}
	}
	if line == "" {
		return clientRun{}, errors.New(`no "calls=... rps=..." line in the client's output`)
	}
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return clientRun{}, fmt.Errorf("field %q of %q is not key=value", f, line)
		}
		fields[k] = v
	}
	var r clientRun
	var err error
	atoi := func(key string) int {
		if err != nil {
			return 0
		}
		var n int
		n, err = strconv.Atoi(fields[key])
		if err != nil {
			err = fmt.Errorf("%s=%q in %q: %w", key, fields[key], line, err)
		}
		return n
	}
	duration := func(key string) time.Duration {
		if err != nil {
			return 0
		}
		var d time.Duration
		d, err = time.ParseDuration(fields[key])
		if err != nil {
			err = fmt.Errorf("%s=%q in %q: %w", key, fields[key], line, err)
		}
		return d
	}
	r.Calls, r.OK, r.Errors, r.Mismatches = atoi("calls"), atoi("ok"), atoi("errors"), atoi("mismatches")
	r.Elapsed, r.P50, r.P99 = duration("elapsed"), duration("p50"), duration("p99")
	if err == nil {
		r.RPS, err = strconv.ParseFloat(fields["rps"], 64)
		if err != nil {
			err = fmt.Errorf("rps=%q in %q: %w", fields["rps"], line, err)
		}
	}
	if err != nil {
		return clientRun{}, err
	}
	if r.Errors > 0 || r.Mismatches > 0 || r.OK != r.Calls || r.Calls == 0 {
		return r, fmt.Errorf("the run did not do its work: %s", line)
	}
	return r, nil
}

// wrkRun is what this tool reads from wrk's report:
//
//	Running 5s test @ http://127.0.0.1:36965/add?a=1&b=2
//	  2 threads and 64 connections
//	  Thread Stats   Avg      Stdev     Max   +/- Stdev
//	    Latency     1.79ms    1.43ms  13.60ms   73.69%
//	    Req/Sec    16.91k     3.57k   21.19k    70.00%
//	  33779 requests in 1.01s, 3.90MB read
//	Requests/sec:  33443.26
//	Transfer/sec:      3.86MB
type wrkRun struct {
	Requests   int
	RPS        float64
	LatencyAvg time.Duration
}

// parseWrkOutput reads wrk's report. It fails if a line it needs is
// missing, if no request was made, or if wrk counted answers that were not
// 2xx or 3xx ("Non-2xx or 3xx responses: N") or socket errors ("Socket
// errors: connect 0, read 5201, write 0, timeout 0"): those requests/sec
// would count failures as work.
func parseWrkOutput(out string) (wrkRun, error) {
	var r wrkRun
	var haveRPS, haveLatency, haveRequests bool
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		switch {
		case len(f) == 0:
		case f[0] == "Requests/sec:" && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return wrkRun{}, fmt.Errorf("wrk's %q: %w", strings.TrimSpace(l), err)
			}
			r.RPS, haveRPS = v, true
		case f[0] == "Latency" && len(f) >= 2:
			d, err := time.ParseDuration(f[1]) // wrk's units, us ms s m h, are Go's
			if err != nil {
				return wrkRun{}, fmt.Errorf("wrk's %q: %w", strings.TrimSpace(l), err)
			}
			r.LatencyAvg, haveLatency = d, true
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return wrkRun{}, fmt.Errorf("wrk's %q: %w", strings.TrimSpace(l), err)
			}
			r.Requests, haveRequests = n, true
		case strings.HasPrefix(strings.TrimSpace(l), "Non-2xx or 3xx responses:"):
			return wrkRun{}, fmt.Errorf("wrk counted failed answers: %s", strings.TrimSpace(l))
		case strings.HasPrefix(strings.TrimSpace(l), "Socket errors:"):
			return wrkRun{}, fmt.Errorf("wrk counted socket errors: %s", strings.TrimSpace(l))
		}
	}
	switch {
	case !haveRPS:
		return wrkRun{}, errors.New(`no "Requests/sec:" line in wrk's output`)
	case !haveLatency:
		return wrkRun{}, errors.New(`no "Latency" line in wrk's output`)
	case !haveRequests:
		return wrkRun{}, errors.New(`no "N requests in" line in wrk's output`)
	case r.Requests == 0:
		return wrkRun{}, errors.New("wrk made no request")
	}
	return r, nil
}
