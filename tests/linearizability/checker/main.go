// Command checker checks a recorded key-value history for linearizability with porcupine.
//
// Input: JSON lines, one operation each:
//
//	{"client":1,"call":123,"return":456,"op":"put","key":"k0","value":"v1"}
//	{"client":2,"call":130,"return":470,"op":"get","key":"k0","found":true,"result":"v1"}
//	{"client":3,"call":140,"op":"cas","key":"k0","expect":"v1","value":"v2","ok":true}
//
// An operation without "return" (or with "return": null) timed out: it may or may not have
// taken effect, so it is given a return time of infinity and an unknown outcome (porcupine's
// standard trick). "expect" = "" in a cas means "the key does not exist".
//
// The model is a register per key (porcupine partitions the history by key). Exit status 0 and
// "linearizable" on stdout, 1 and the first violating key on stdout, 2 on a usage/input error.
// -html FILE writes porcupine's visualization; -timeout bounds the search (exit 3 on unknown).
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

type record struct {
	Client int    `json:"client"`
	Call   int64  `json:"call"`
	Return *int64 `json:"return"`
	Op     string `json:"op"`
	Key    string `json:"key"`
	Value  string `json:"value"`
	Expect string `json:"expect"`
	Result string `json:"result"`
	Found  bool   `json:"found"`
	Ok     bool   `json:"ok"`
}

type input struct {
	Op     string
	Key    string
	Value  string
	Expect string
}

type output struct {
	Unknown bool
	Found   bool
	Result  string
	Ok      bool
}

// state: the value of one key; "" is "absent" (the recorder never writes empty values).
var model = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(input).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, in, out interface{}) (bool, interface{}) {
		s := state.(string)
		i := in.(input)
		o := out.(output)
		switch i.Op {
		case "get":
			if o.Unknown {
				return true, s
			}
			if o.Found {
				return s != "" && s == o.Result, s
			}
			return s == "", s
		case "put":
			return true, i.Value
		case "cas":
			matches := s == i.Expect
			if o.Unknown {
				if matches {
					return true, i.Value
				}
				return true, s
			}
			if o.Ok != matches {
				return false, s
			}
			if matches {
				return true, i.Value
			}
			return true, s
		}
		return false, s
	},
	Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
	DescribeOperation: func(in, out interface{}) string {
		i := in.(input)
		o := out.(output)
		res := ""
		switch {
		case o.Unknown:
			res = "timeout"
		case i.Op == "get" && !o.Found:
			res = "absent"
		case i.Op == "get":
			res = fmt.Sprintf("%q", o.Result)
		case i.Op == "put":
			res = "ok"
		default:
			res = fmt.Sprintf("%v", o.Ok)
		}
		switch i.Op {
		case "get":
			return fmt.Sprintf("get(%s) -> %s", i.Key, res)
		case "put":
			return fmt.Sprintf("put(%s, %q) -> %s", i.Key, i.Value, res)
		default:
			return fmt.Sprintf("cas(%s, %q, %q) -> %s", i.Key, i.Expect, i.Value, res)
		}
	},
	DescribeState: func(state interface{}) string {
		if state.(string) == "" {
			return "<absent>"
		}
		return fmt.Sprintf("%q", state.(string))
	},
}

func readHistory(path string) ([]porcupine.Operation, error) {
	f := os.Stdin
	if path != "-" {
		var err error
		f, err = os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
	}
	var ops []porcupine.Operation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if r.Op != "get" && r.Op != "put" && r.Op != "cas" {
			return nil, fmt.Errorf("line %d: unknown op %q", line, r.Op)
		}
		op := porcupine.Operation{
			ClientId: r.Client,
			Input:    input{Op: r.Op, Key: r.Key, Value: r.Value, Expect: r.Expect},
			Call:     r.Call,
		}
		if r.Return == nil {
			op.Return = math.MaxInt64
			op.Output = output{Unknown: true}
		} else {
			if *r.Return < r.Call {
				return nil, fmt.Errorf("line %d: return before call", line)
			}
			op.Return = *r.Return
			op.Output = output{Found: r.Found, Result: r.Result, Ok: r.Ok}
		}
		ops = append(ops, op)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ops, nil
}

func main() {
	html := flag.String("html", "", "write porcupine's HTML visualization to this file")
	timeout := flag.Duration("timeout", 0, "give up after this long (0: no limit)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [-html FILE] [-timeout D] HISTORY.jsonl|-\n", os.Args[0])
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ops, err := readHistory(flag.Arg(0))
	if err != nil {
		fmt.Fprintf(os.Stderr, "checker: %v\n", err)
		os.Exit(2)
	}
	start := time.Now()
	result, info := porcupine.CheckOperationsVerbose(model, ops, *timeout)
	elapsed := time.Since(start)
	if *html != "" {
		if err := porcupine.VisualizePath(model, info, *html); err != nil {
			fmt.Fprintf(os.Stderr, "checker: visualization: %v\n", err)
		}
	}
	fmt.Fprintf(os.Stderr, "checker: %d operations checked in %v\n", len(ops), elapsed)
	switch result {
	case porcupine.Ok:
		fmt.Println("linearizable")
	case porcupine.Illegal:
		fmt.Println("NOT linearizable: " + firstViolation(ops))
		os.Exit(1)
	default:
		fmt.Println("unknown: the check timed out")
		os.Exit(3)
	}
}

// firstViolation names the first key (in sorted order) whose sub-history is not linearizable,
// with the operations of that key.
func firstViolation(ops []porcupine.Operation) string {
	for _, part := range model.Partition(ops) {
		single := model
		single.Partition = nil
		if porcupine.CheckOperations(single, part) {
			continue
		}
		key := part[0].Input.(input).Key
		msg := fmt.Sprintf("key %q (%d operations):", key, len(part))
		sorted := append([]porcupine.Operation(nil), part...)
		sort.Slice(sorted, func(a, b int) bool { return sorted[a].Call < sorted[b].Call })
		for i, op := range sorted {
			if i >= 50 {
				msg += fmt.Sprintf("\n  ... %d more", len(sorted)-i)
				break
			}
			ret := "inf"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprint(op.Return)
			}
			msg += fmt.Sprintf("\n  client %d [%d, %s] %s", op.ClientId, op.Call, ret,
				model.DescribeOperation(op.Input, op.Output))
		}
		return msg
	}
	return "(no single key fails alone)"
}
