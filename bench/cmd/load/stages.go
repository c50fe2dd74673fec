package main

import "strings"

// stage is one of the course's stages as this tool runs it.
type stage struct {
	num, name string // "02", "02-json-tcp"
	// sharing says how the callers of its client's load mode share
	// connections, in the words of its cmd/client/main.go (and of the
	// client it builds there); quotes are the phrases of those files the
	// words come from, which a test checks are still there.
	sharing string
	quotes  []quote
}

// quote is a phrase of a file of a stage, relative to the stage's folder.
type quote struct{ file, phrase string }

// stages are the stages in order.
var stages = []stage{
	{
		num: "01", name: "01-http-add",
		sharing: "one stub shared by every caller; its net/http Transport keeps up to 64 idle connections",
		quotes: []quote{
			{"cmd/client/main.go", "c := httpadd.NewClient(*addr, opts...)"},
			{"cmd/client/main.go", "*concurrency, *timeout, c.Add)"},
			{"client.go", "MaxIdleConnsPerHost: 64"},
		},
	},
	{
		num: "02", name: "02-json-tcp",
		sharing: "each caller with its own connection, dialled before the calls",
		quotes: []quote{
			{"cmd/client/main.go", "how many callers at once, each with its own connection"},
			{"cmd/client/main.go", "add, closeAll, err := dialPool(ctx, *addr, *concurrency)"},
		},
	},
	{
		num: "03", name: "03-custom-protocol",
		sharing: "each caller with its own connection, dialled before the calls",
		quotes: []quote{
			{"cmd/client/main.go", "how many callers at once, each with its own connection"},
			{"cmd/client/main.go", "add, closeAll, err := dialPool(ctx, *addr, *concurrency)"},
		},
	},
	{
		num: "04", name: "04-gob-binary",
		sharing: "each caller with its own connection, dialled before the calls",
		quotes: []quote{
			{"cmd/client/main.go", "how many callers at once, each with its own connection"},
			{"cmd/client/main.go", "add, closeAll, err := dialPool(ctx, *addr, *concurrency)"},
		},
	},
	{
		num: "05", name: "05-async-callback",
		sharing: "callers share the -conns connections, a call on each in turn (-conns left at its default, 1: every call on one connection)",
		quotes: []quote{
			{"cmd/client/main.go", "they share the -conns connections"},
			{"cmd/client/main.go", `flags.Int("conns", 1, "load mode: how many ` + "`connections`" + ` the callers share, a call on each in turn")`},
		},
	},
	{
		num: "06", name: "06-wsgi-router",
		sharing: "one client shared by every caller, each caller on a kept-alive connection; it keeps up to 64 for reuse",
		quotes: []quote{
			{"cmd/client/main.go", "how many callers at once, each on a kept-alive connection"},
			{"cmd/client/main.go", "*concurrency, *timeout, c.Add)"},
			{"client.go", "maxIdleConns       = 64"},
		},
	}, {
		num: "07", name: "07-at-most-once",
		sharing: "callers share the -conns clients, a call on each in turn, each client with one connection up at a time (-conns left at its default, 1: every call on one connection)",
		quotes: []quote{
			{"cmd/client/main.go", "they share the -conns clients"},
			{"cmd/client/main.go", "each keeps one connection up at a time"},
		},
	},
}

// wrkTarget is a server wrk loads: a stage's server, with extra flags.
type wrkTarget struct {
	stage string   // the stage whose server runs
	flags []string // added to -addr 127.0.0.1:0
	what  string   // what serves, for the table
}

// wrkPath is the request wrk repeats: stage 01's add, which stage 06 also serves.
const wrkPath = "/add?a=1&b=2"

var wrkTargets = []wrkTarget{
	{stage: "01-http-add", what: "net/http's server with the stage's own handler"},
	{stage: "06-wsgi-router", what: "the stage's hand-built HTTP/1.1 server and its application"},
	{stage: "06-wsgi-router", flags: []string{"-stdlib"}, what: "net/http's server with the same application: the peer"},
}

// label is the server's command, as the table names it: "06-wsgi-router -stdlib".
func (t wrkTarget) label() string {
	return strings.Join(append([]string{t.stage}, t.flags...), " ")
}
