// foreign-producer writes records the way non-Java clients can: header names that are not
// UTF-8, empty header names, null header values, thousands of headers, and batches in every
// compression codec. The real-broker tests run it between normal orders to check that nothing
// a record carries can stop a consumer.
//
// Usage: foreign-producer BROKERS TOPIC START COUNT [mixed]
//
// With "mixed", orders whose id is 37 mod 100 are malformed JSON and those 71 mod 100 have a
// negative amount (the orders example dead-letters both); the thousands-of-headers shape is
// left out, to keep 10,000 records light.
//
// It writes COUNT orders with ids "foreign-START".., keyed by id (the orders example's
// JSON), in five groups, one per codec (none, gzip, snappy, lz4, zstd); every record
// carries one of the odd header shapes. It exits non-zero if any record was not acknowledged.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func headers(i int) []kgo.RecordHeader {
	switch i % 5 {
	case 0: // a header name that is not UTF-8
		return []kgo.RecordHeader{{Key: "bad-\xff\xfe-name", Value: []byte("v")}}
	case 1: // an empty header name
		return []kgo.RecordHeader{{Key: "", Value: []byte("empty-name")}}
	case 2: // a null header value
		return []kgo.RecordHeader{{Key: "nullable", Value: nil}}
	case 3: // thousands of headers
		hs := make([]kgo.RecordHeader, 0, 2000)
		for j := 0; j < 2000; j++ {
			hs = append(hs, kgo.RecordHeader{Key: "h" + strconv.Itoa(j), Value: []byte{byte(j)}})
		}
		return hs
	default: // a value that is not UTF-8 under a repeated name
		return []kgo.RecordHeader{{Key: "dup", Value: []byte{0xc3, 0x28}}, {Key: "dup", Value: nil}}
	}
}

func main() {
	if len(os.Args) != 5 && !(len(os.Args) == 6 && os.Args[5] == "mixed") {
		fmt.Fprintln(os.Stderr, "usage: foreign-producer BROKERS TOPIC START COUNT [mixed]")
		os.Exit(2)
	}
	brokers, topic := os.Args[1], os.Args[2]
	start, err1 := strconv.Atoi(os.Args[3])
	count, err2 := strconv.Atoi(os.Args[4])
	if err1 != nil || err2 != nil {
		fmt.Fprintln(os.Stderr, "START and COUNT must be integers")
		os.Exit(2)
	}
	mixed := len(os.Args) == 6
	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
	}{
		{"none", kgo.NoCompression()},
		{"gzip", kgo.GzipCompression()},
		{"snappy", kgo.SnappyCompression()},
		{"lz4", kgo.Lz4Compression()},
		{"zstd", kgo.ZstdCompression()},
	}
	per := (count + len(codecs) - 1) / len(codecs)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	next := start
	for _, c := range codecs {
		client, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ProducerBatchCompression(c.codec),
			kgo.ProducerLinger(5*time.Millisecond))
		if err != nil {
			fmt.Fprintln(os.Stderr, "client:", err)
			os.Exit(1)
		}
		var records []*kgo.Record
		for i := 0; i < per && next < start+count; i++ {
			id := next
			next++
			value := fmt.Sprintf(`{"id":"foreign-%d","amount_cents":1,"customer":"go"}`, id)
			hs := headers(id)
			if mixed {
				switch id % 100 {
				case 37:
					value = fmt.Sprintf(`{"id":"foreign-%d","amount_cents":`, id)
				case 71:
					value = fmt.Sprintf(`{"id":"foreign-%d","amount_cents":-5,"customer":"go"}`, id)
				}
				if id%5 == 3 {
					hs = []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}
				}
			}
			records = append(records, &kgo.Record{
				Topic:   topic,
				Key:     []byte(fmt.Sprintf("foreign-%d", id)),
				Value:   []byte(value),
				Headers: hs,
			})
		}
		if err := client.ProduceSync(ctx, records...).FirstErr(); err != nil {
			fmt.Fprintf(os.Stderr, "produce (%s): %v\n", c.name, err)
			os.Exit(1)
		}
		client.Close()
		fmt.Printf("%s: %d records\n", c.name, len(records))
	}
}
