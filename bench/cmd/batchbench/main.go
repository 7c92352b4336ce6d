// Command batchbench measures the batch prediction job (functions/cmd/batch)
// on this machine: N generated JPEGs in fake-gcs-server, the job run by the
// Cloud Run stand-in (infra/runlocal) as task processes, and
//
//   - throughput: interleaved rounds of 1 task and K tasks (each task
//     GOMAXPROCS=1, as a 1-vCPU Cloud Run task), each into a fresh results
//     bucket, checking that every object got exactly one result;
//
//   - CPU per image: the task processes' user+system time (reaped
//     children's rusage) over the images, against in-process Predict (the
//     HTTP function's JSON "uris" mode, same objects, same fake-gcs-server)
//     in this process;
//
//   - memory: the largest task's peak RSS, from the run summary (run with
//     two -n to see that it does not grow with the prefix);
//
//   - -kill: task 0 killed midway (no retries), then the run restarted as a
//     new execution: one result per object, and the restart skips exactly
//     what the killed run wrote.
//
//     go run ./bench/cmd/batchbench -n 10000 -tasks 2 -rounds 3
//     go run ./bench/cmd/batchbench -n 10000 -tasks 2 -kill
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"cloud.google.com/go/run/apiv2/runpb"
	"cloud.google.com/go/storage"
	"google.golang.org/api/iterator"

	"github.com/orchard-mlops/orchard/functions/batch"
	"github.com/orchard-mlops/orchard/functions/predict"
	"github.com/orchard-mlops/orchard/infra/runlocal"
	"github.com/orchard-mlops/orchard/shared/blob"
	"github.com/orchard-mlops/orchard/shared/emulators"
	"github.com/orchard-mlops/orchard/shared/model"
	"github.com/orchard-mlops/orchard/shared/model/modeltest"
	"github.com/orchard-mlops/orchard/shared/modelsource"
	"github.com/orchard-mlops/orchard/shared/onnxrt"
	"github.com/orchard-mlops/orchard/shared/results"
)

func main() {
	n := flag.Int("n", 10000, "generated images under the prefix")
	tasks := flag.Int("tasks", 2, "task count of the parallel runs")
	rounds := flag.Int("rounds", 3, "interleaved rounds (1 task, then -tasks tasks; the order alternates)")
	workers := flag.Int("workers", 4, "WORKERS per task (objects in flight)")
	kill := flag.Bool("kill", false, "instead: kill task 0 midway, restart the run, check nothing was written twice")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("batchbench: ")
	ctx := context.Background()

	work, err := os.MkdirTemp("", "batchbench")
	check(err)
	defer os.RemoveAll(work)
	modelDir := filepath.Join(work, "model")
	check(writeDefaultModel(modelDir))
	bin := filepath.Join(work, "batch")
	log.Print("building ./functions/cmd/batch")
	build := exec.Command("go", "build", "-o", bin, "./functions/cmd/batch")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	check(build.Run())

	g, err := emulators.StartGCS(ctx)
	check(err)
	defer g.Close()
	c, err := g.Client(ctx)
	check(err)
	check(c.Bucket("src").Create(ctx, "p", nil))
	names := upload(ctx, c, *n)

	srv, err := runlocal.NewServer(runlocal.Config{Project: "p", Region: "local", KillGrace: time.Second,
		Env: []string{"STORAGE_EMULATOR_HOST=" + g.Host, "GOMAXPROCS=1", "LOG_LEVEL=warn", fmt.Sprintf("WORKERS=%d", *workers),
			"MODEL_URI=file://" + modelDir, "ORT_LIB=" + os.Getenv("ORT_LIB")},
		Jobs: map[string]runlocal.Job{"batch": {Command: []string{bin}, TaskCount: 1}}})
	check(err)
	defer srv.Close()
	b := &bench{ctx: ctx, c: c, srv: srv, names: names}
	if *kill {
		b.killAndRestart(*tasks)
		return
	}
	b.throughput(*tasks, *rounds)
	b.baseline(modelDir)
}

type bench struct {
	ctx    context.Context
	c      *storage.Client
	srv    *runlocal.Server
	names  []string
	bucket int
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

func writeDefaultModel(dir string) error {
	m, err := modeltest.CNN(modeltest.CNNOptions{})
	if err != nil {
		return err
	}
	st, err := (*blob.Opener)(nil).Open(context.Background(), dir) // a local directory
	if err != nil {
		return err
	}
	return m.Save(context.Background(), st)
}

// upload writes n small JPEGs (random rectangles on a random background,
// 64-128 px a side) under photos/classN/, 16 at a time.
func upload(ctx context.Context, c *storage.Client, n int) []string {
	t0 := time.Now()
	names := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := range 16 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range next {
				names[i] = fmt.Sprintf("photos/class%d/%06d.jpg", i%10, i)
				put(ctx, c, names[i], genJPEG(r))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	log.Printf("uploaded %d images in %s", n, time.Since(t0).Round(time.Millisecond))
	return names
}

func genJPEG(r *rand.Rand) []byte {
	w, h := 64+r.IntN(64), 64+r.IntN(64)
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	bg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	fg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	x0, y0, x1, y1 := r.IntN(w/2), r.IntN(h/2), w/2+r.IntN(w/2), h/2+r.IntN(h/2)
	for y := range h {
		for x := range w {
			col := bg
			if x >= x0 && x < x1 && y >= y0 && y < y1 {
				col = fg
			}
			m.SetRGBA(x, y, col)
		}
	}
	var b bytes.Buffer
	check(jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}))
	return b.Bytes()
}

func put(ctx context.Context, c *storage.Client, name string, data []byte) {
	w := c.Bucket("src").Object(name).NewWriter(ctx)
	w.ContentType = "image/jpeg"
	w.ChunkSize = 0 // one request; no 16 MiB buffer per object
	_, err := w.Write(data)
	check(err)
	check(w.Close())
}

// newBucket makes a fresh results bucket.
func (b *bench) newBucket() string {
	b.bucket++
	name := fmt.Sprintf("results-%d", b.bucket)
	check(b.c.Bucket(name).Create(b.ctx, "p", nil))
	return name
}

// run executes the job with tasks tasks into results and returns the
// execution, its wall time, the tasks' CPU and the largest task's peak RSS.
func (b *bench) run(tasks, retries int, results string, during func(*runpb.Execution)) (*runpb.Execution, time.Duration, time.Duration, int64) {
	before := childUsage()
	t0 := time.Now()
	op, err := b.srv.RunJob(b.ctx, &runpb.RunJobRequest{Name: b.srv.JobName("batch"), Overrides: &runpb.RunJobRequest_Overrides{
		TaskCount: int32(tasks), ContainerOverrides: []*runpb.RunJobRequest_Overrides_ContainerOverride{{Env: []*runpb.EnvVar{
			env(batch.PrefixEnv, "gs://src/photos/"), env("RESULTS_BUCKET", results)}}}}})
	check(err)
	var ex runpb.Execution
	check(op.GetMetadata().UnmarshalTo(&ex))
	if during != nil {
		during(&ex)
	}
	done, err := b.srv.Wait(b.ctx, ex.GetName())
	check(err)
	wall := time.Since(t0)
	after := childUsage()
	// The largest task's peak RSS and the tasks' own CPU, as they report
	// them in the run summary.
	var rss int64
	if raw, _, err := blob.NewGCS(b.c, results, "").Read(b.ctx, batch.SummaryKey(done.GetUid()), 1<<20); err == nil {
		var sum batch.Summary
		if json.Unmarshal(raw, &sum) == nil {
			rss = sum.PeakRSS
			log.Printf("  %s: tasks' own CPU %.2f s (start-up %.2f s), %.3f ms/image after start-up; reaped children's rusage %.2f s",
				done.GetUid(), sum.CPUSeconds, sum.StartCPUSeconds, (sum.CPUSeconds-sum.StartCPUSeconds)*1000/float64(max(sum.Processed(), 1)),
				(cpuOf(after) - cpuOf(before)).Seconds())
		}
	}
	return done, wall, cpuOf(after) - cpuOf(before), rss
}

func env(k, v string) *runpb.EnvVar {
	return &runpb.EnvVar{Name: k, Values: &runpb.EnvVar_Value{Value: v}}
}

func childUsage() syscall.Rusage {
	var u syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_CHILDREN, &u))
	return u
}

func selfUsage() syscall.Rusage {
	var u syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &u))
	return u
}

func cpuOf(u syscall.Rusage) time.Duration {
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// throughput runs interleaved rounds of 1 and k tasks.
func (b *bench) throughput(k, rounds int) {
	type res struct {
		rate, cpuPer float64
		rss          int64
	}
	var one, many []res
	for r := range rounds {
		order := []int{1, k}
		if r%2 == 1 {
			order = []int{k, 1}
		}
		for _, tasks := range order {
			bucket := b.newBucket()
			ex, wall, cpu, rss := b.run(tasks, 0, bucket, nil)
			if ex.GetSucceededCount() != int32(tasks) {
				log.Fatalf("round %d, %d tasks: %d succeeded (logs %s)", r, tasks, ex.GetSucceededCount(), ex.GetLogUri())
			}
			b.checkOneResultEach(bucket)
			x := res{rate: float64(len(b.names)) / wall.Seconds(), cpuPer: float64(cpu.Microseconds()) / 1000 / float64(len(b.names)), rss: rss}
			log.Printf("round %d: %d task(s): %.0f images/s (%.1f s), task CPU %.3f ms/image, largest task peak RSS %.0f MiB, load %s",
				r, tasks, x.rate, wall.Seconds(), x.cpuPer, float64(rss)/(1<<20), loadavg())
			if tasks == 1 {
				one = append(one, x)
			} else {
				many = append(many, x)
			}
		}
	}
	rate := func(xs []res) []float64 {
		var out []float64
		for _, x := range xs {
			out = append(out, x.rate)
		}
		return out
	}
	var ratios []float64
	for i := range one {
		ratios = append(ratios, many[i].rate/one[i].rate)
	}
	log.Printf("throughput: 1 task median %.0f images/s, %d tasks median %.0f images/s; per-round ratios %v, median %.2fx",
		median(rate(one)), k, median(rate(many)), round2(ratios), median(ratios))
	var cpus []float64
	for _, x := range append(one, many...) {
		cpus = append(cpus, x.cpuPer)
	}
	log.Printf("job CPU per image (task processes, user+system): median %.3f ms over %d runs %v", median(cpus), len(cpus), round2(cpus))
}

// checkOneResultEach lists the results bucket: exactly one result (or
// error record) per source object, and nothing else under photos/.
func (b *bench) checkOneResultEach(bucket string) map[string]string {
	got := map[string]string{}
	it := b.c.Bucket(bucket).Objects(b.ctx, &storage.Query{Prefix: "photos/"})
	for {
		a, err := it.Next()
		if err == iterator.Done {
			break
		}
		check(err)
		name := strings.TrimSuffix(strings.TrimSuffix(a.Name, results.ErrorSuffix), results.ResultSuffix)
		if _, dup := got[name]; dup {
			log.Fatalf("%s has two results", name)
		}
		got[name] = a.Name
	}
	if len(got) != len(b.names) {
		log.Fatalf("%d results for %d objects in %s", len(got), len(b.names), bucket)
	}
	for _, n := range b.names {
		if _, ok := got[n]; !ok {
			log.Fatalf("%s has no result in %s", n, bucket)
		}
	}
	return got
}

// baseline is in-process Predict's CPU per image: the HTTP function's
// JSON "uris" mode (read from fake-gcs-server, decode, classify) on the
// same objects, 256 per request, in this process.
func (b *bench) baseline(modelDir string) {
	check(onnxrt.Init())
	m, err := model.Load(b.ctx, nil, modelDir)
	check(err)
	cl, err := onnxrt.NewClassifier(m, onnxrt.Options{IntraOpThreads: 1})
	check(err)
	defer cl.Close()
	runtime.GOMAXPROCS(1) // as one task
	cfg := predict.DefaultConfig()
	cfg.Workers, cfg.AllowedBuckets, cfg.MaxObjects, cfg.TopK = 4, []string{"src"}, 256, 5
	app := predict.NewApp(cfg, predict.AppOptions{Provider: modelsource.Static{C: cl}, Storage: b.c})
	defer app.Close()
	s := app.HTTP
	var cpus []float64
	for r := range 3 {
		u0, t0 := selfUsage(), time.Now()
		for i := 0; i < len(b.names); i += 256 {
			var req predict.JSONRequest
			for _, n := range b.names[i:min(i+256, len(b.names))] {
				req.URIs = append(req.URIs, "gs://src/"+n)
			}
			body, _ := json.Marshal(req)
			w := httptest.NewRecorder()
			hr := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			hr.Header.Set("Content-Type", "application/json")
			s.ServeHTTP(w, hr)
			if w.Code != http.StatusOK || strings.Contains(w.Body.String(), `"error"`) {
				log.Fatalf("Predict: %d %s", w.Code, w.Body.String()[:min(300, w.Body.Len())])
			}
		}
		cpu := cpuOf(selfUsage()) - cpuOf(u0)
		per := float64(cpu.Microseconds()) / 1000 / float64(len(b.names))
		cpus = append(cpus, per)
		log.Printf("in-process Predict round %d: %.3f ms CPU/image, %.0f images/s, load %s", r, per, float64(len(b.names))/time.Since(t0).Seconds(), loadavg())
	}
	log.Printf("in-process Predict CPU per image: median %.3f ms %v", median(cpus), round2(cpus))
}

// killAndRestart kills task 0 when about half of its shard is done (no
// retries), restarts the run, and checks that the restart skipped exactly
// what the killed run wrote.
func (b *bench) killAndRestart(k int) {
	bucket := b.newBucket()
	var shard0 []string
	for _, n := range b.names {
		if batch.Shard(n, k) == 0 {
			shard0 = append(shard0, n)
		}
	}
	slices.Sort(shard0)
	mid := shard0[len(shard0)/2] + results.ResultSuffix
	first, wall1, _, _ := b.run(k, 0, bucket, func(ex *runpb.Execution) {
		for {
			if _, err := b.c.Bucket(bucket).Object(mid).Attrs(b.ctx); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		check(b.srv.KillTask(ex.GetName(), 0))
		log.Printf("killed task 0 of %s once %s existed", ex.GetUid(), mid)
	})
	log.Printf("first run %s: %d succeeded, %d failed, %.1f s", first.GetUid(), first.GetSucceededCount(), first.GetFailedCount(), wall1.Seconds())
	byFirst := b.countByExecution(bucket, first.GetUid())
	second, wall2, _, _ := b.run(k, 0, bucket, nil)
	log.Printf("restart %s: %d of %d succeeded, %.1f s", second.GetUid(), second.GetSucceededCount(), k, wall2.Seconds())
	b.checkOneResultEach(bucket)
	bySecond := b.countByExecution(bucket, second.GetUid())
	st := blob.NewGCS(b.c, bucket, "")
	raw, _, err := st.Read(b.ctx, batch.SummaryKey(second.GetUid()), 1<<20)
	check(err)
	var sum batch.Summary
	check(json.Unmarshal(raw, &sum))
	log.Printf("results: %d by the killed run, %d by the restart, %d objects; the restart's summary: written %d, done before %d, images %d, largest task peak RSS %.0f MiB",
		byFirst, bySecond, len(b.names), sum.Written, sum.Done, sum.Images, float64(sum.PeakRSS)/(1<<20))
	if byFirst+bySecond != len(b.names) || sum.Done != int64(byFirst) || sum.Written != int64(bySecond) {
		log.Fatal("an object was written twice or skipped")
	}
	log.Print("ok: every object has exactly one result; the restart wrote only what the killed run had not")
}

// countByExecution counts the results an execution wrote (event_id names it).
func (b *bench) countByExecution(bucket, exec string) int {
	n := 0
	st := blob.NewGCS(b.c, bucket, "")
	as, err := blob.Collect(b.ctx, st, blob.ListOptions{Prefix: "photos/"}, blob.Limits{})
	check(err)
	for _, a := range as {
		raw, _, err := st.Read(b.ctx, a.Key, 1<<20)
		check(err)
		var r results.Upload
		check(json.Unmarshal(raw, &r))
		if strings.HasPrefix(r.EventID, "batch/"+exec+"/") {
			n++
		}
	}
	return n
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func round2(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x*100+0.5)) / 100
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
