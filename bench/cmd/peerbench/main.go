// Command peerbench measures Orchard's Predict server against the Node.js
// peer in bench/peer (sharp + onnxruntime-node) on the same model and the
// same four images, and prints server CPU per request and latency side by
// side, measured in interleaved rounds, with the ratio. With -memory it
// instead sends concurrent huge-but-valid PNGs to Orchard alone and reports
// the answers and the server's peak RSS. See bench/README.md.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
)

func main() {
	modelDir := flag.String("model", os.Getenv("ORCHARD_BENCH_MODEL"), "model directory (model.json, model.onnx); empty: the trainer's default architecture with untrained weights")
	rounds := flag.Int("rounds", 5, "interleaved rounds per image")
	memory := flag.Bool("memory", false, "the memory test instead: concurrent 39 MP PNGs against Orchard alone")
	concurrency := flag.Int("concurrency", 16, "with -memory: concurrent requests per kind of PNG")
	dump := flag.String("dump", "", "write the four test images into this directory and exit")
	cgroupMem := flag.Int64("cgroup-memory", 2<<30, "with -memory: run the server in a memory cgroup of this many bytes, as on Cloud Run (0: none; needs root)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("peerbench: ")

	if *dump != "" {
		for _, img := range images() {
			check(os.WriteFile(filepath.Join(*dump, strings.ReplaceAll(img.name, " ", "-")+".jpg"), img.jpeg, 0o644))
		}
		return
	}
	work, err := os.MkdirTemp("", "peerbench")
	check(err)
	defer os.RemoveAll(work)
	if *modelDir == "" {
		*modelDir = filepath.Join(work, "model")
		check(writeDefaultModel(*modelDir))
	}
	bin := filepath.Join(work, "functions")
	log.Print("building ./functions/cmd/functions")
	run("go", "build", "-o", bin, "./functions/cmd/functions")

	if *memory {
		memoryTest(bin, *modelDir, work, *concurrency, *cgroupMem)
		return
	}
	orchard := start("orchard", *modelDir, bin)
	defer orchard.stop()
	peer := start("peer", *modelDir, "node", "bench/peer/server.js")
	defer peer.stop()
	compare(orchard, peer, images(), *rounds)
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

// writeDefaultModel saves the trainer's default architecture (untrained):
// the cost of preprocessing does not depend on the weights.
func writeDefaultModel(dir string) error {
	m, err := modeltest.CNN(modeltest.CNNOptions{})
	if err != nil {
		return err
	}
	st, err := blob.NewDir(dir)
	if err != nil {
		return err
	}
	return m.Save(context.Background(), st)
}

// server is a running process serving Predict-like POSTs at url.
type server struct {
	name string
	cmd  *exec.Cmd
	url  string
}

// start runs a server on a free port: Orchard reads the model and the port
// from the environment, the peer from its arguments.
func start(name, model, prog string, args ...string) *server {
	port := freePort()
	cmd := exec.Command(prog, args...)
	if name == "orchard" {
		cmd.Env = append(os.Environ(), "FUNCTION_TARGET=Predict", "HOST=127.0.0.1", "PORT="+port, "MODEL_URI=file://"+model, "LOG_LEVEL=warn")
	} else {
		cmd.Args = append(cmd.Args, model, port)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	check(cmd.Start())
	s := &server{name: name, cmd: cmd, url: "http://127.0.0.1:" + port + "/"}
	s.waitReady()
	return s
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func (s *server) waitReady() {
	for range 300 {
		if resp, err := http.Get(s.url); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 || s.name == "peer" {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatalf("%s did not come up on %s", s.name, s.url)
}

func (s *server) stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

var client = &http.Client{Timeout: 5 * time.Minute}

// post sends one image and returns the status.
func (s *server) post(img []byte) (int, error) {
	resp, err := client.Post(s.url, "image/jpeg", bytes.NewReader(img))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// cpu is the process's user+system CPU time so far (/proc/PID/stat).
func cpu(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// testImage is one benchmark image with how many requests a round sends.
type testImage struct {
	name string
	jpeg []byte
	n    int
}

// images generates the four test images: a Fruits-360-sized crop, a 1080p
// frame, a 12 MP photo, and the same with sensor-like noise.
func images() []testImage {
	return []testImage{
		{"100x100", encode(photo(100, 100, 0), 90), 400},
		{"1920x1080", encode(photo(1920, 1080, 0), 80), 60},
		{"4000x3000", encode(photo(4000, 3000, 0), 80), 30},
		{"4000x3000 noisy", encode(photo(4000, 3000, 14), 85), 15},
	}
}

// photo draws shaded fruit-like ellipses on a gradient with a mild texture,
// plus triangular noise of the given peak (8-bit levels).
func photo(w, h int, noise float64) *image.RGBA {
	r := rand.New(rand.NewPCG(uint64(w), uint64(noise)))
	type fruit struct{ cx, cy, rx, ry, r, g, b float64 }
	fruits := make([]fruit, 5)
	for i := range fruits {
		fruits[i] = fruit{0.2 + 0.6*r.Float64(), 0.2 + 0.6*r.Float64(), 0.1 + 0.15*r.Float64(), 0.1 + 0.15*r.Float64(),
			60 + 190*r.Float64(), 30 + 170*r.Float64(), 20 + 120*r.Float64()}
	}
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	s := float64(min(w, h))
	for y := range h {
		fy := float64(y) / float64(h)
		for x := range w {
			fx := float64(x) / float64(w)
			cr, cg, cb := 200-60*fy+20*fx, 190-40*fy, 170+50*fy-30*fx
			for _, f := range fruits {
				dx, dy := (fx-f.cx)*float64(w)/s/f.rx, (fy-f.cy)*float64(h)/s/f.ry
				if d2 := dx*dx + dy*dy; d2 < 1 {
					shade := 1 - 0.45*d2
					cr, cg, cb = f.r*shade, f.g*shade, f.b*shade
				}
			}
			t := 4 * math.Sin(fx*60) * math.Sin(fy*45)
			n := func() float64 { return (r.Float64() + r.Float64() - 1) * noise }
			if noise == 0 {
				n = func() float64 { return 0 }
			}
			i := m.PixOffset(x, y)
			m.Pix[i], m.Pix[i+1], m.Pix[i+2], m.Pix[i+3] = clamp(cr+t+n()), clamp(cg+t+n()), clamp(cb+t+n()), 255
		}
	}
	return m
}

func clamp(v float64) uint8 { return uint8(math.Round(max(0, min(255, v)))) }

func encode(m image.Image, q int) []byte {
	var b bytes.Buffer
	check(jpeg.Encode(&b, m, &jpeg.Options{Quality: q}))
	return b.Bytes()
}

// sample is one server's cost for one image in one round.
type sample struct{ cpu, p50 time.Duration }

// measure sends img.n requests one after another and returns the CPU per
// request and the median latency.
func measure(s *server, img testImage) sample {
	for range 3 { // warm up: first-request costs are not per-request costs
		if code, err := s.post(img.jpeg); err != nil || code != 200 {
			log.Fatalf("%s %s: status %d, %v", s.name, img.name, code, err)
		}
	}
	lat := make([]time.Duration, img.n)
	before := cpu(s.cmd.Process.Pid)
	for i := range img.n {
		t := time.Now()
		if code, err := s.post(img.jpeg); err != nil || code != 200 {
			log.Fatalf("%s %s: status %d, %v", s.name, img.name, code, err)
		}
		lat[i] = time.Since(t)
	}
	used := cpu(s.cmd.Process.Pid) - before
	slices.Sort(lat)
	return sample{cpu: used / time.Duration(img.n), p50: lat[img.n/2]}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func medianF(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// compare runs the rounds, alternating which server goes first, and prints
// one line per image.
func compare(a, b *server, imgs []testImage, rounds int) {
	fmt.Printf("%d interleaved rounds; CPU = server user+system time per request; latency = median per request (client side)\n", rounds)
	fmt.Printf("%-16s %9s | %12s %12s %7s | %12s %12s\n", "image", "bytes", "orchard CPU", "peer CPU", "ratio", "orchard p50", "peer p50")
	for _, img := range imgs {
		var ac, bc, al, bl []time.Duration
		var ratios []float64
		for r := range rounds {
			var sa, sb sample
			if r%2 == 0 {
				sa, sb = measure(a, img), measure(b, img)
			} else {
				sb, sa = measure(b, img), measure(a, img)
			}
			ac, bc, al, bl = append(ac, sa.cpu), append(bc, sb.cpu), append(al, sa.p50), append(bl, sb.p50)
			ratios = append(ratios, float64(sa.cpu)/float64(max(sb.cpu, 1)))
		}
		fmt.Printf("%-16s %9d | %12s %12s %6.2fx | %12s %12s\n", img.name, len(img.jpeg),
			ms(median(ac)), ms(median(bc)), medianF(ratios), ms(median(al)), ms(median(bl)))
		fmt.Printf("%-16s %9s   per round: orchard %s, peer %s\n", "", "", msList(ac), msList(bc))
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func msList(d []time.Duration) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = fmt.Sprintf("%.2f", float64(v.Microseconds())/1000)
	}
	return strings.Join(s, " ")
}

// memoryTest sends concurrency 16-bit and then concurrency 8-bit PNGs of
// about 39 MP at once to Orchard, and reports the answers and peak RSS.
func memoryTest(bin, model, work string, concurrency int, cgroupMem int64) {
	log.Print("generating a 7200x5400 16-bit PNG and an 8-bit one")
	pngs := []struct {
		name string
		data []byte
	}{{"16-bit RGBA 39 MP", bigPNG(true)}, {"8-bit RGB 39 MP", bigPNG(false)}}
	port := freePort()
	env := append(os.Environ(), "FUNCTION_TARGET=Predict", "HOST=127.0.0.1", "PORT="+port, "MODEL_URI=file://"+model, "LOG_LEVEL=warn")
	cmd := exec.Command(bin)
	where := "no memory cgroup"
	if cgroupMem > 0 {
		dir, err := memoryCgroup(cgroupMem)
		check(err)
		defer os.Remove(dir)
		// Join the cgroup before exec, so the server starts inside it and
		// sizes GOMEMLIMIT and its decode budget from it.
		cmd = exec.Command("sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$2"`, "sh", dir, bin)
		where = fmt.Sprintf("in a %d MiB memory cgroup (%s)", cgroupMem>>20, dir)
	}
	// Each 503 logs an error line: the status counts below say the same.
	cmd.Env, cmd.Stdout, cmd.Stderr = env, io.Discard, io.Discard
	check(cmd.Start())
	s := &server{name: "orchard", cmd: cmd, url: "http://127.0.0.1:" + port + "/"}
	defer s.stop()
	s.waitReady()
	log.Printf("server pid %d %s", cmd.Process.Pid, where)
	for _, p := range pngs {
		start := time.Now()
		codes := map[int]int{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				code, err := s.post(p.data)
				if err != nil {
					log.Printf("request failed: %v", err)
				}
				mu.Lock()
				codes[code]++
				mu.Unlock()
			})
		}
		wg.Wait()
		alive := running(cmd.Process.Pid)
		fmt.Printf("%-18s %7d bytes x %d concurrent: answers %v in %.1f s; server alive: %v; peak RSS so far %d MB\n",
			p.name, len(p.data), concurrency, codes, time.Since(start).Seconds(), alive, peakRSS(cmd.Process.Pid)>>20)
	}
}

// bigPNG is a smooth 7200x5400 picture (38.9 MP, just under the 40 MP cap):
// tiny as a PNG, 311 MB (16-bit) or 156 MB (8-bit RGBA) decoded.
func bigPNG(sixteen bool) []byte {
	const w, h = 7200, 5400
	var m image.Image
	if sixteen {
		n := image.NewNRGBA64(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				n.SetNRGBA64(x, y, color.NRGBA64{uint16(x * 9), uint16(y * 12), 40000, 0xffff})
			}
		}
		m = n
	} else {
		n := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := range h {
			for x := range w {
				n.SetRGBA(x, y, color.RGBA{uint8(x / 29), uint8(y / 22), 160, 255})
			}
		}
		m = n
	}
	var b bytes.Buffer
	check((&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&b, m))
	return b.Bytes()
}

// memoryCgroup creates a memory cgroup (v2 if mounted, else v1) limited to
// limit bytes and returns its directory.
func memoryCgroup(limit int64) (string, error) {
	name := fmt.Sprintf("orchard-peerbench-%d", os.Getpid())
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil { // v2
		dir := filepath.Join("/sys/fs/cgroup", name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", fmt.Errorf("creating a cgroup (run as root, or -cgroup-memory 0): %w", err)
		}
		return dir, os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(limit, 10)), 0o644)
	}
	dir := filepath.Join("/sys/fs/cgroup/memory", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating a cgroup (run as root, or -cgroup-memory 0): %w", err)
	}
	return dir, os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), []byte(strconv.FormatInt(limit, 10)), 0o644)
}

// running reports whether the process exists and is not a zombie (a child
// killed by the OOM killer stays one until it is waited for).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// peakRSS is VmHWM from /proc/PID/status, in bytes.
func peakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}
